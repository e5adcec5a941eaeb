%% Backpressure both ways (issue 12): Erlang senders that wait for room
%% (send/3), send_many/2, and Python writers (Channel.send, try_send,
%% async_send) read by Erlang.
-module(py_backpressure_tests).

-include_lib("eunit/include/eunit.hrl").

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

backpressure_test_() ->
    {setup, fun setup/0,
     [{"send/3 waits for room; a receive wakes it", fun send3_waits_for_room/0},
      {"send/3 times out with nothing queued and nothing left behind", fun send3_timeout/0},
      {"send/3 with timeout 0 is send/2 minus busy", fun send3_zero_timeout/0},
      {"send/3: bad timeouts are badarg before anything happens", fun send3_badarg/0},
      {"waiting senders are woken in the order they began to wait", fun senders_in_order/0},
      {timeout, 60, {"a sender woken in the moment it parks leaves no wake message behind",
                     fun no_stray_wake/0}},
      {"close wakes every waiting sender with {error, closed}", fun close_wakes_senders/0},
      {"a waiting sender that died passes its wake to the next", fun dead_sender_passes_on/0},
      {timeout, 60, {"Python reading slowly paces an Erlang send/3 stream: every term once, in order",
                     fun python_paces_erlang/0}},
      {"send_many/2 queues in order while terms fit", fun send_many_fits/0},
      {"send_many/2 of long lists, closed channels and bad input", fun send_many_edges/0},
      {"Python writes; Erlang reads with recv/2 and try_receive/1", fun python_writes/0},
      {"Channel.send: TimeoutError, ChannelClosed, ValueError, TypeError; try_send",
       fun python_send_errors/0},
      {"what Python sends comes back exact: atoms (cached per thread), channels, failed "
       "conversions that queue nothing", fun python_sends_exact/0},
      {timeout, 120, {"a Python producer of 1,000,000 terms into a 64 KiB channel, a slow subscriber: "
                      "nothing lost, never over max_size", fun python_million/0}},
      {"binaries Python sent are released once Erlang received them", fun python_binaries_released/0},
      {"what Python sends counts against max_size as term_size/1 counts it", fun python_sizes/0},
      {"Python reads what Python wrote, every way it can read", fun python_to_python/0},
      {"terms a Python thread sent outlive the thread", fun python_thread_gone/0},
      {"channels Python sends into themselves, or into each other, are still freed",
       fun python_self_reference_freed/0},
      {"a Python job waiting in Channel.send is cancelled at once, queuing nothing",
       fun python_send_cancelled/0},
      {timeout, 60, {"async_send waits for room through the asyncio loop", fun async_send_asyncio/0}},
      {"a cancelled async_send queues nothing and leaves no waiter", fun async_send_cancelled/0},
      {"py:stream: a generator's items in order, then {ok, none}", fun stream_generator/0},
      {"py:stream pauses the generator while the channel is full", fun stream_backpressure/0},
      {"py:stream of an async generator", fun stream_async_generator/0},
      {"py:stream: an exception ends the stream; await gives it; the channel closes",
       fun stream_raises/0},
      {"py:stream: cancel stops the generator, its finally runs", fun stream_cancelled/0},
      {"py:stream: bad arguments are badarg", fun stream_badarg/0}]
     ++ uvloop_tests()}.

-define(PRODUCERS, <<"
import asyncio
import erlang

def produce(ref, count, close=True):
    ch = Channel(ref)
    for n in range(count):
        ch.send(n)
    if close:
        ch.close()
    return count

class CountingChannel(Channel):
    '''Counts the native calls async_send makes: one try_send per message, and a park
    only when it must wait, never a poll.'''
    def __init__(self, ref):
        self.tries = 0
        self.parks = 0
    def try_send(self, term):
        self.tries += 1
        return super().try_send(term)
    def _park_sender(self, *args):
        self.parks += 1
        return super()._park_sender(*args)

async def produce_async(ref, count):
    ch = CountingChannel(ref)
    ticks = 0
    done = False
    async def ticker():
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0.001)
    ticking = asyncio.ensure_future(ticker())
    for n in range(count):
        await ch.async_send(n)
    done = True
    await ticking
    ch.close()
    return (type(asyncio.get_running_loop()).__module__, ch.tries, ch.parks, ticks)

def numbers(count, scale=1):
    for n in range(count):
        yield n * scale

produced = []
def counted(count):
    for n in range(count):
        produced.append(n)
        yield n

async def numbers_async(count):
    for n in range(count):
        await asyncio.sleep(0)
        yield n

def fails_after(count):
    yield from range(count)
    raise ValueError('generator failed')

cleaned_up = []
def forever():
    try:
        n = 0
        while True:
            yield n
            n += 1
    finally:
        cleaned_up.append(True)

def run_asyncio(count, ref):
    return asyncio.run(produce_async(ref, count))

async def send_then_cancel(ref):
    ch = Channel(ref)
    sending = asyncio.ensure_future(ch.async_send(3))
    while ch.info()['waiting_senders'] == 0:
        await asyncio.sleep(0.001)
    sending.cancel()
    try:
        await sending
    except asyncio.CancelledError:
        return (ch.info()['waiting_senders'], ch.info()['length'])
">>).

helpers() ->
    ok = py:exec(?PRODUCERS).

send3_waits_for_room() ->
    {ok, Ch} = py_channel:new(#{max_size => 64}),
    Big = binary:copy(<<"x">>, 40),
    ok = py_channel:send(Ch, Big),
    Self = self(),
    Sender = spawn_link(fun() -> Self ! {sent, py_channel:send(Ch, Big, infinity)} end),
    wait_for_senders(Ch, 1),
    ?assertMatch(#{length := 1, waiting_senders := 1}, py_channel:info(Ch)),
    {ok, Big} = py_channel:try_receive(Ch),
    ?assertEqual(ok, receive {sent, R} -> R after 5000 -> no_answer end),
    ?assertMatch(#{length := 1, waiting_senders := 0}, py_channel:info(Ch)),
    ?assertNot(is_process_alive(Sender)).

send3_timeout() ->
    {ok, Ch} = py_channel:new(#{max_size => 16}),
    ok = py_channel:send(Ch, 1),
    ok = py_channel:send(Ch, 2),
    ?assertEqual({error, timeout}, py_channel:send(Ch, 3, 50)),
    ?assertMatch(#{length := 2, waiting_senders := 0}, py_channel:info(Ch)),
    %% Room after the timeout sends no late wake-up to the mailbox.
    {ok, 1} = py_channel:try_receive(Ch),
    receive Stray -> ?assertEqual(no_stray_message, Stray) after 100 -> ok end.

%% A channel with room for two terms, a Python reader taking them as they
%% come, and a sender that parks for nearly every term: a reader's receive
%% often wakes it between its park and its retry in the same call, which then
%% sends. Its wake message comes anyway, and send/3 must collect it (it was
%% left in the mailbox: about 700 of 50,000).
no_stray_wake() ->
    ok = py:exec(<<"
from erlang.channel import Channel
def count_all(ref):
    return sum(1 for _ in Channel(ref))
">>),
    Term = {t, 1},
    {ok, Ch} = py_channel:new(#{max_size => 2 * py_channel:term_size(Term)}),
    Pending = py:spawn_call('__main__', count_all, [Ch]),
    Parent = self(),
    N = 50000,
    Sender = spawn_link(
               fun() ->
                       [ok = py_channel:send(Ch, Term, infinity) || _ <- lists:seq(1, N)],
                       %% Any wake still on its way lands well within this.
                       timer:sleep(100),
                       {messages, Left} = process_info(self(), messages),
                       Parent ! {self(), Left}
               end),
    ?assertEqual([], receive {Sender, Left} -> Left after 50000 -> timeout end),
    ok = py_channel:close(Ch),
    ?assertEqual({ok, N}, py:await(Pending, 10000)).

send3_zero_timeout() ->
    {ok, Ch} = py_channel:new(#{max_size => 16}),
    ?assertEqual(ok, py_channel:send(Ch, 1, 0)),
    ?assertEqual(ok, py_channel:send(Ch, 2, 0)),
    ?assertEqual(busy, py_channel:send(Ch, 3)),
    ?assertEqual({error, timeout}, py_channel:send(Ch, 3, 0)),
    ?assertEqual({error, too_large}, py_channel:send(Ch, binary:copy(<<"x">>, 100), 0)),
    ?assertEqual({error, too_large}, py_channel:send(Ch, binary:copy(<<"x">>, 100), infinity)),
    ok = py_channel:close(Ch),
    ?assertEqual({error, closed}, py_channel:send(Ch, 3, 0)),
    ?assertEqual({error, closed}, py_channel:send(Ch, 3, infinity)),
    ?assertMatch(#{length := 2, waiting_senders := 0}, py_channel:info(Ch)).

send3_badarg() ->
    {ok, Ch} = py_channel:new(#{max_size => 16}),
    [?assertError(badarg, py_channel:send(Ch, x, T)) || T <- [-1, 1.5, forever, 1 bsl 32]],
    ?assertError(badarg, py_channel:send(make_ref(), x, 10)),
    ?assertMatch(#{length := 0, sent := 0}, py_channel:info(Ch)).

senders_in_order() ->
    %% Room for two terms: each receive leaves the channel half full, which wakes the first
    %% sender in line (a receive that empties it wakes them all).
    {ok, Ch} = py_channel:new(#{max_size => 16}),
    {ok, 2} = py_channel:send_many(Ch, [first, second]),
    Self = self(),
    %% Each starts waiting once the one before it waits.
    [begin
         spawn_link(fun() -> Self ! {sent, Name, py_channel:send(Ch, Name, infinity)} end),
         wait_for_senders(Ch, N)
     end || {N, Name} <- [{1, a}, {2, b}, {3, c}]],
    %% Each receive frees room for one term: the senders get it in turn.
    Order = [begin
                 {ok, _} = py_channel:try_receive(Ch),
                 receive {sent, Name, ok} -> Name after 5000 -> error(no_sender_woken) end
             end || _ <- [a, b, c]],
    ?assertEqual([a, b, c], Order),
    ?assertEqual([{ok, b}, {ok, c}], [py_channel:try_receive(Ch) || _ <- [b, c]]).

close_wakes_senders() ->
    {ok, Ch} = py_channel:new(#{max_size => 8}),
    ok = py_channel:send(Ch, full),
    Self = self(),
    [spawn_link(fun() -> Self ! {sent, py_channel:send(Ch, N, infinity)} end) || N <- [1, 2, 3]],
    wait_for_senders(Ch, 3),
    ok = py_channel:close(Ch),
    ?assertEqual([{error, closed}, {error, closed}, {error, closed}],
                 [receive {sent, R} -> R after 5000 -> no_answer end || _ <- [1, 2, 3]]),
    ?assertMatch(#{waiting_senders := 0, length := 1}, py_channel:info(Ch)).

dead_sender_passes_on() ->
    {ok, Ch} = py_channel:new(#{max_size => 8}),
    ok = py_channel:send(Ch, full),
    Self = self(),
    {Doomed, Monitor} = spawn_monitor(fun() -> py_channel:send(Ch, doomed, infinity) end),
    wait_for_senders(Ch, 1),
    spawn_link(fun() -> Self ! {sent, py_channel:send(Ch, survivor, infinity)} end),
    wait_for_senders(Ch, 2),
    exit(Doomed, kill),
    receive {'DOWN', Monitor, process, Doomed, killed} -> ok end,
    %% The wake for the room this frees goes to the dead sender first, then on.
    {ok, full} = py_channel:try_receive(Ch),
    ?assertEqual(ok, receive {sent, R} -> R after 5000 -> no_answer end),
    ?assertEqual({ok, survivor}, py_channel:try_receive(Ch)),
    ?assertMatch(#{waiting_senders := 0}, py_channel:info(Ch)).

python_paces_erlang() ->
    Count = 20000,
    {ok, Ch} = py_channel:new(#{max_size => 1024}),
    ok = py:exec(<<"
import time
def read_slowly(ref):
    seen = []
    for n in Channel(ref):
        seen.append(n)
        if n % 1000 == 0:
            time.sleep(0.01)
    return seen
">>),
    Reader = py:spawn_call('__main__', read_slowly, [Ch]),
    [ok = py_channel:send(Ch, N, infinity) || N <- lists:seq(1, Count)],
    ok = py_channel:close(Ch),
    ?assertEqual({ok, lists:seq(1, Count)}, py:await(Reader, 60000)),
    #{busy := Busy} = py_channel:info(Ch),
    %% The sender did wait: the channel was full at times.
    ?assert(Busy > 0).

send_many_fits() ->
    {ok, Ch} = py_channel:new(#{max_size => 40}),
    %% Small integers count 8 bytes: five fit.
    ?assertEqual({ok, 5}, py_channel:send_many(Ch, lists:seq(1, 8))),
    ?assertEqual({ok, 0}, py_channel:send_many(Ch, [6])),
    ?assertEqual([1, 2, 3, 4, 5], [begin {ok, N} = py_channel:try_receive(Ch), N end || _ <- lists:seq(1, 5)]),
    ?assertEqual({ok, 0}, py_channel:send_many(Ch, [])),
    %% Stops at a term that can never fit, before the terms after it.
    ?assertEqual({ok, 1}, py_channel:send_many(Ch, [a, binary:copy(<<"x">>, 100), b])),
    ?assertMatch(#{length := 1, sent := 6}, py_channel:info(Ch)).

send_many_edges() ->
    {ok, Ch} = py_channel:new(),
    Terms = [{item, N, <<"data">>} || N <- lists:seq(1, 5500)],
    %% More than one native batch.
    ?assertEqual({ok, 5500}, py_channel:send_many(Ch, Terms)),
    ok = py_channel:close(Ch),
    ?assertEqual(Terms, py_test_support:recv_all(Ch)),
    ?assertEqual({error, closed}, py_channel:send_many(Ch, [1])),
    {ok, Open} = py_channel:new(),
    ?assertError(badarg, py_channel:send_many(Open, not_a_list)),
    ?assertError(badarg, py_channel:send_many(Open, [1, 2 | 3])),
    ?assertError(badarg, py_channel:send_many(make_ref(), [1])),
    %% Nothing was queued by the refused calls.
    ?assertMatch(#{length := 0}, py_channel:info(Open)),
    %% Terms holding channels (this one, another) travel in a batch among plain ones.
    {ok, Other} = py_channel:new(),
    Mixed = [plain, {self_ref, Open}, {other, Other}, [Open, Other], <<"tail">>],
    ?assertEqual({ok, 5}, py_channel:send_many(Open, Mixed)),
    ok = py_channel:close(Open),
    ?assertEqual(Mixed, py_test_support:recv_all(Open)).

wait_for_senders(Ch, N) ->
    py_test_support:wait_until(fun() -> maps:get(waiting_senders, py_channel:info(Ch)) >= N end).

python_writes() ->
    helpers(),
    {ok, Ch} = py_channel:new(#{max_size => 256}),
    Producer = py:spawn_call('__main__', produce, [Ch, 10000]),
    ?assertEqual(lists:seq(0, 9999), py_test_support:recv_all(Ch)),
    ?assertEqual({ok, 10000}, py:await(Producer, 30000)),
    %% try_receive reads what Python wrote as well.
    {ok, Ch2} = py_channel:new(),
    {ok, 3} = py:call('__main__', produce, [Ch2, 3, false]),
    ?assertEqual([{ok, 0}, {ok, 1}, {ok, 2}, {error, empty}],
                 [py_channel:try_receive(Ch2) || _ <- lists:seq(1, 4)]).

python_send_errors() ->
    {ok, Ch} = py_channel:new(#{max_size => 16}),
    Eval = fun(Code) -> py:eval(Code, #{ch => Ch}) end,
    ?assertEqual({ok, [true, true, false]},
                 Eval(<<"(lambda c: [c.try_send(n) for n in (1, 2, 3)])(Channel(ch))">>)),
    ?assertMatch({error, {'TimeoutError', <<"no room in the channel within the timeout">>}},
                 Eval(<<"Channel(ch).send(3, timeout=0.05)">>)),
    ?assertMatch({error, {'TimeoutError', _}}, Eval(<<"Channel(ch).send(3, timeout_ms=20)">>)),
    ?assertMatch({error, {'ValueError', <<"the message alone is larger", _/binary>>}},
                 Eval(<<"Channel(ch).send('x' * 100)">>)),
    ?assertMatch({error, {'ValueError', _}}, Eval(<<"Channel(ch).try_send('x' * 100)">>)),
    ?assertMatch({error, {'TypeError', _}}, Eval(<<"Channel(ch).try_send(object())">>)),
    ?assertMatch({error, {'ValueError', _}}, Eval(<<"Channel(ch).send(1, timeout=-1)">>)),
    ?assertMatch(#{length := 2, waiting_senders := 0}, py_channel:info(Ch)),
    ok = py_channel:close(Ch),
    ?assertMatch({error, {'ChannelClosed', _}}, Eval(<<"Channel(ch).send(3)">>)),
    ?assertMatch({error, {'ChannelClosed', _}}, Eval(<<"Channel(ch).try_send(3)">>)),
    ?assertEqual([{ok, 1}, {ok, 2}, {error, closed}],
                 [py_channel:try_receive(Ch) || _ <- lists:seq(1, 3)]).

%% The reader is a subscriber that takes 1,000 terms at a time as messages. At
%% each `passive' its helper reads nothing, so the size it then sees is exact
%% while the producer keeps sending: never more than max_size. Every 100,000 it
%% pauses, so the producer waits for room.
python_million() ->
    helpers(),
    Count = 1000000,
    MaxSize = 65536,
    {ok, Ch} = py_channel:new(#{max_size => MaxSize}),
    Producer = py:spawn_call('__main__', produce, [Ch, Count]),
    ok = py_channel:subscribe(Ch, 1000),
    {Received, MaxSeen} = subscribed(Ch, 0, 0),
    ?assertEqual({ok, Count}, py:await(Producer, 60000)),
    ?assertEqual(Count, Received),
    ?assert(MaxSeen =< MaxSize),
    ?assert(MaxSeen > MaxSize div 2),
    ?assertMatch(#{sent := Count, received := Count, waiting_senders := 0}, py_channel:info(Ch)).

subscribed(Ch, Expected, MaxSeen) ->
    receive
        {py_channel, Ch, Expected} ->
            Expected rem 100000 =:= 0 andalso timer:sleep(20),
            subscribed(Ch, Expected + 1, MaxSeen);
        {py_channel_passive, Ch} ->
            #{size := Size} = py_channel:info(Ch),
            ok = py_channel:subscribe(Ch, 1000),
            subscribed(Ch, Expected, max(MaxSeen, Size));
        {py_channel_closed, Ch} ->
            {Expected, MaxSeen}
    after 30000 ->
            error({stalled_at, Expected})
    end.

python_send_cancelled() ->
    helpers(),
    {ok, Ch} = py_channel:new(#{max_size => 8}),
    ok = py_channel:send(Ch, full),
    Pending = py:spawn_call('__main__', produce, [Ch, 5]),
    wait_for_senders(Ch, 1),
    ok = py:cancel(Pending),
    ?assertEqual({error, cancelled}, py:await(Pending, 5000)),
    ?assertMatch(#{length := 1, waiting_senders := 0}, py_channel:info(Ch)),
    ?assertEqual({ok, full}, py_channel:try_receive(Ch)).

async_send_asyncio() ->
    helpers(),
    async_send_on(run_asyncio, <<"asyncio">>).

async_send_on(Runner, LoopModule) ->
    Count = 3000,
    {ok, Ch} = py_channel:new(#{max_size => 64}),
    Producer = py:spawn_call('__main__', Runner, [Count, Ch]),
    %% A slow reader: a pause every 100 terms keeps the producer waiting for room.
    Received = read_pausing(Ch, 0),
    ?assertEqual(lists:seq(0, Count - 1), Received),
    {ok, {Loop, Tries, Parks, Ticks}} = py:await(Producer, 30000),
    ?assertMatch({match, _}, re:run(Loop, LoopModule)),
    %% One try_send per message; parks only for real waits (a poll would call again and
    %% again); and the loop kept running other coroutines meanwhile.
    ?assertEqual(Count, Tries),
    ?assert(Parks > 0),
    ?assert(Parks =< 2 * Count),
    ?assert(Ticks > 0).

read_pausing(Ch, N) ->
    case py_channel:recv(Ch, 30000) of
        {ok, Term} ->
            N rem 100 =:= 0 andalso timer:sleep(2),
            [Term | read_pausing(Ch, N + 1)];
        {error, closed} ->
            []
    end.

async_send_cancelled() ->
    helpers(),
    {ok, Ch} = py_channel:new(#{max_size => 16}),
    {ok, 2} = py_channel:send_many(Ch, [1, 2]),
    ?assertEqual({ok, {0, 2}}, py:eval(<<"asyncio.run(send_then_cancel(ch))">>, #{ch => Ch})),
    ?assertEqual([{ok, 1}, {ok, 2}, {error, empty}],
                 [py_channel:try_receive(Ch) || _ <- [1, 2, 3]]).

uvloop_tests() ->
    case py_test_support:uvloop_available() of
        true ->
            [{timeout, 60, {"async_send waits for room on uvloop", fun async_send_uvloop/0}}];
        {false, Venv} ->
            [{"async_send on uvloop: SKIPPED, uvloop is not importable and " ++ Venv ++
                  " has none", fun() -> ok end}]
    end.

async_send_uvloop() ->
    helpers(),
    ok = py:exec(<<"import uvloop\n"
                   "def run_uvloop(count, ref):\n"
                   "    loop = uvloop.new_event_loop()\n"
                   "    try:\n"
                   "        return loop.run_until_complete(produce_async(ref, count))\n"
                   "    finally:\n"
                   "        loop.close()\n">>),
    async_send_on(run_uvloop, <<"uvloop">>).

stream_generator() ->
    helpers(),
    {ok, Ch, Pending} = py:stream('__main__', numbers, [1000], #{kwargs => #{scale => 2}}),
    ?assertEqual([2 * N || N <- lists:seq(0, 999)], py_test_support:recv_all(Ch)),
    ?assertEqual({ok, none}, py:await(Pending, 5000)),
    %% Any iterable streams, from any module.
    {ok, Ch2, Pending2} = py:stream(builtins, range, [5]),
    ?assertEqual([0, 1, 2, 3, 4], py_test_support:recv_all(Ch2)),
    ?assertEqual({ok, none}, py:await(Pending2, 5000)).

stream_backpressure() ->
    helpers(),
    ok = py:exec(<<"produced.clear()">>),
    %% 10 small integers fit in 80 bytes.
    {ok, Ch, Pending} = py:stream('__main__', counted, [1000], #{max_size => 80}),
    py_test_support:wait_until(fun() -> maps:get(waiting_senders, py_channel:info(Ch)) =:= 1 end),
    %% Paused: the generator produced what fits, and the one item it waits to send.
    ?assertEqual({ok, 11}, py:eval(<<"len(produced)">>)),
    ?assertEqual(lists:seq(0, 999), py_test_support:recv_all(Ch)),
    ?assertEqual({ok, none}, py:await(Pending, 5000)).

stream_async_generator() ->
    helpers(),
    {ok, Ch, Pending} = py:stream('__main__', numbers_async, [500], #{max_size => 64}),
    ?assertEqual(lists:seq(0, 499), py_test_support:recv_all(Ch)),
    ?assertEqual({ok, none}, py:await(Pending, 5000)).

stream_raises() ->
    helpers(),
    {ok, Ch, Pending} = py:stream('__main__', fails_after, [3]),
    ?assertEqual([0, 1, 2], py_test_support:recv_all(Ch)),
    ?assertEqual({error, {'ValueError', <<"generator failed">>}}, py:await(Pending, 5000)),
    %% A function that is not there, or returns no iterable: the channel closes all the same.
    {ok, Ch2, Pending2} = py:stream('__main__', no_such_function, []),
    ?assertEqual({error, closed}, py_channel:recv(Ch2, 5000)),
    ?assertMatch({error, {'NameError', _}}, py:await(Pending2, 5000)),
    {ok, Ch3, Pending3} = py:stream(math, sqrt, [4]),
    ?assertEqual({error, closed}, py_channel:recv(Ch3, 5000)),
    ?assertMatch({error, {'TypeError', <<"py:stream needs a function that returns a generator", _/binary>>}},
                 py:await(Pending3, 5000)).

stream_cancelled() ->
    helpers(),
    ok = py:exec(<<"cleaned_up.clear()">>),
    {ok, Ch, Pending} = py:stream('__main__', forever, [], #{max_size => 64}),
    {ok, 0} = py_channel:recv(Ch, 5000),
    py_test_support:wait_until(fun() -> maps:get(waiting_senders, py_channel:info(Ch)) =:= 1 end),
    ok = py:cancel(Pending),
    ?assertEqual({error, cancelled}, py:await(Pending, 5000)),
    ?assertEqual({ok, [true]}, py:eval(<<"cleaned_up">>)),
    %% Closed: a reader drains what was queued, then sees the end.
    Rest = py_test_support:recv_all(Ch),
    ?assertEqual(lists:seq(1, length(Rest)), Rest).

stream_badarg() ->
    [?assertError(badarg, py:stream(M, F, A, O))
     || {M, F, A, O} <- [{1, f, [], #{}}, {m, f, x, #{}}, {m, f, [], #{max_size => -1}},
                         {m, f, [], #{kwargs => []}}, {m, f, [], #{bogus => 1}}]],
    receive Stray -> ?assertEqual(no_stray_message, Stray) after 100 -> ok end.

python_sends_exact() ->
    {ok, Ch} = py_channel:new(),
    {ok, Other} = py_channel:new(),
    Eval = fun(Code) -> py:eval(Code, #{ch => Ch, other => Other}) end,
    %% 3,000 distinct atoms, more than a thread caches, each sent twice from the same object.
    {ok, none} = Eval(<<"(lambda c, atoms: [c.send(a) for a in atoms for _ in (1, 2)] and None)"
                        "(Channel(ch), [__import__('erlang').Atom('py_bp_atom_%d' % n) "
                        "for n in range(3000)])">>),
    Atoms = [binary_to_atom(<<"py_bp_atom_", (integer_to_binary(N))/binary>>)
             || N <- lists:seq(0, 2999)],
    ?assertEqual(lists:append([[A, A] || A <- Atoms]), take_all(Ch)),
    %% A plain str stays a binary; an Atom subclass is an atom.
    {ok, none} = Eval(<<"(lambda c: c.send(('text', __import__('erlang').Atom('text'))))(Channel(ch))">>),
    ?assertEqual([{<<"text">>, text}], take_all(Ch)),
    %% Channels inside what Python sends, the channel itself included, come back live.
    {ok, none} = Eval(<<"(lambda c, o: c.send({'self': c.ref, 'other': o}))(Channel(ch), other)">>),
    [#{<<"self">> := Self, <<"other">> := Other2}] = take_all(Ch),
    ?assertEqual(ok, py_channel:send(Self, via_self)),
    ?assertEqual([via_self], take_all(Ch)),
    ?assertEqual(ok, py_channel:send(Other2, via_other)),
    ?assertEqual({ok, via_other}, py_channel:try_receive(Other)),
    %% A conversion that fails part way queues nothing; the next send is whole.
    ?assertMatch({error, {'TypeError', _}},
                 Eval(<<"Channel(ch).send(('built first', [1, 2, object()]))">>)),
    ?assertEqual([], take_all(Ch)),
    {ok, none} = Eval(<<"Channel(ch).send(('whole', [1, 2, 3]))">>),
    ?assertEqual([{<<"whole">>, [1, 2, 3]}], take_all(Ch)).

take_all(Ch) ->
    case py_channel:try_receive(Ch) of
        {ok, Term} -> [Term | take_all(Ch)];
        {error, empty} -> []
    end.

python_binaries_released() ->
    {ok, Ch} = py_channel:new(),
    Baseline = erlang:memory(binary),
    %% 20 MB of binaries made in Python, held by the queue alone. (An env a Python sender
    %% filled is kept for reuse only if it stayed small: these must all go.)
    {ok, none} = py:eval(<<"(lambda c: [c.send(bytes([n]) * 1000000) for n in range(20)] and None)"
                           "(Channel(ch))">>, #{ch => Ch}),
    ?assert(erlang:memory(binary) >= Baseline + 20 * 1000000),
    {Reader, Monitor} = spawn_monitor(fun() -> 20 = length(take_all(Ch)) end),
    receive {'DOWN', Monitor, process, Reader, Why} -> ?assertEqual(normal, Why) end,
    py_test_support:wait_until(fun() -> erlang:memory(binary) < Baseline + 2000000 end, 3000).

python_self_reference_freed() ->
    Before = settled_live_channels(),
    {Pid, Ref} = spawn_monitor(
                   fun() ->
                           {ok, A} = py_channel:new(),
                           {ok, B} = py_channel:new(),
                           %% Plain terms first, so the channel's arena is in use.
                           {ok, none} = py:eval(<<"(lambda a, b: [a.send(n) for n in range(3)] and "
                                                  "a.send(a.ref) or a.send((a.ref, b.ref)) or "
                                                  "b.send([b.ref]) or a.send('after'))"
                                                  "(Channel(ach), Channel(bch))">>,
                                                #{ach => A, bch => B})
                   end),
    receive {'DOWN', Ref, process, Pid, normal} -> ok end,
    {ok, _} = py:eval(<<"__import__('gc').collect()">>),
    %% Nothing outside refers to A and B any more: both are freed, however they hold
    %% themselves and each other.
    py_test_support:wait_until(fun() -> settled_live_channels() =< Before end).

settled_live_channels() ->
    [erlang:garbage_collect(P) || P <- processes()],
    maps:get(live_channels, py_channel:stats()).

%% Small plain terms travel encoded, others as terms built by the NIF: either way a term
%% counts what term_size/1 says, and comes back exact.
python_sizes() ->
    {ok, Ch} = py_channel:new(),
    ok = py:exec(<<"
import erlang
def samples(pid):
    return [0, 255, 256, -1, 2**31 - 1, -2**31, 2**40, -2**63, 2**63, 2**64 - 1, 2**64,
            1.5, -0.0, 'text', '', '\\u00e9' * 10, b'bytes', bytearray(b'ba'), b'x' * 5000,
            erlang.Atom('an_atom'), erlang.Atom('\\u00e9'), None, True, False, [], [1, [2, [3]]],
            (), (1,), tuple(range(300)), list(range(1000)), pid, (erlang.Atom('request'), pid, 'data'),
            {'a': 1}, float('nan'), [b'y' * 3000, b'z' * 3000]]
">>),
    {ok, Count} = py:eval(<<"len(samples(None))">>),
    [begin
         {ok, none} = py:eval(<<"Channel(ch).send(samples(pid)[i])">>,
                              #{ch => Ch, pid => self(), i => I}),
         #{size := Size} = py_channel:info(Ch),
         {ok, Term} = py_channel:try_receive(Ch),
         {ok, Expected} = py:eval(<<"samples(pid)[i]">>, #{pid => self(), i => I}),
         ?assertEqual({I, Expected}, {I, Term}),
         ?assertEqual({I, py_channel:term_size(Term)}, {I, Size})
     end || I <- lists:seq(0, Count - 1)].

python_to_python() ->
    %% Room for a few items: the writer thread waits for the reader now and then.
    {ok, Ch} = py_channel:new(#{max_size => 16384}),
    ok = py:exec(<<"
import threading, asyncio, erlang
def round_trip(ref, pid):
    # What round-trips through Erlang terms unchanged: bytes that are not UTF-8 (others
    # come back as str), no infinities (they come back as atoms).
    items = [1, 'two', b'\\xffthree', (erlang.Atom('four'), pid, [5.0, None]), {'six': 6},
             b'\\xff' * 5000, 2**70, -0.5] * 50
    channel = Channel(ref)
    writer = threading.Thread(target=lambda: [channel.send(item) for item in items])
    writer.start()
    got = [channel.receive(10) for _ in range(100)]
    got += channel.receive_many(50, 10)
    while len(got) < len(items):
        got.append(next(channel))
    writer.join()
    async def one_more():
        await channel.async_send(('async', pid))
        return await channel.async_receive()
    last = asyncio.run(one_more())
    return got == items and last == ('async', pid) and channel.try_receive() is None
">>),
    ?assertEqual({ok, true}, py:call('__main__', round_trip, [Ch, self()])).

%% Small terms are kept in memory of the thread that sent them, handed over to the frames:
%% the thread may end long before they are read.
python_thread_gone() ->
    {ok, Ch} = py_channel:new(),
    ok = py:exec(<<"
import threading, erlang
def send_from_threads(ref, pid, threads, each):
    channel = Channel(ref)
    def send(n):
        for i in range(each):
            channel.send((erlang.Atom('t'), n, i, pid, 'x' * (i % 50)))
    workers = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
">>),
    {ok, none} = py:call('__main__', send_from_threads, [Ch, self(), 4, 5000]),
    Self = self(),
    Received = take_all(Ch),
    ?assertEqual(20000, length(Received)),
    Expected = [{t, N, I, Self, binary:copy(<<"x">>, I rem 50)} || N <- lists:seq(0, 3), I <- lists:seq(0, 4999)],
    ?assertEqual(lists:sort(Expected), lists:sort(Received)),
    %% Each thread's terms in the order it sent them.
    [?assertEqual([I || {t, M, I, _, _} <- Received, M =:= N], lists:seq(0, 4999)) || N <- lists:seq(0, 3)].


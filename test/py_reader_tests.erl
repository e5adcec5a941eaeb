%% Python reading channels: `erlang.channel.Channel', sync and async,
%% replies, many readers, and the erlang_python callback names.
-module(py_reader_tests).

-include_lib("eunit/include/eunit.hrl").

-import(py_test_support, [send_retrying/2, recv_all/1, wait_until/1]).

-define(HELPERS, <<"
import asyncio, sys, threading, time
from erlang.channel import Channel, ChannelClosed, reply
import erlang

def serve(ref):
    n = 0
    for tag, pid, value in Channel(ref):
        reply(pid, ('answer', value * 2))
        n += 1
    return n

def drain(ref, **options):
    return list(Channel(ref, **options))

def receive_with(ref, timeout):
    try:
        return (erlang.Atom('ok'), Channel(ref).receive(timeout))
    except TimeoutError:
        return 'timeout'
    except ChannelClosed:
        return 'closed'

def try_receive(ref):
    try:
        return (erlang.Atom('ok'), Channel(ref).try_receive())
    except ChannelClosed:
        return 'closed'

def batches(ref, size):
    ch = Channel(ref)
    out = []
    while True:
        try:
            out.append(ch.receive_many(size, 5))
        except ChannelClosed:
            return out

async def async_collect(ref):
    return [m async for m in Channel(ref)]

def run_async(name, *args):
    return asyncio.run(globals()[name](*args))

# A coroutine waiting in async_receive, watched from other threads: the CPU its
# thread uses and the Python calls that thread makes (a profile hook counts every
# call and resumed coroutine, so a polling loop, even one that sleeps, shows up in
# the count whatever the machine's load; a busy loop in native code shows up in
# the CPU time).
watched = {}

class Watch:
    def __init__(self):
        self.calls = 0
        self.loop = None
        self.clock = None
        self.ready = threading.Event()

async def watched_async_wait(ref, key):
    watch = watched[key] = Watch()
    watch.loop = asyncio.get_running_loop()
    watch.clock = time.pthread_getcpuclockid(threading.get_ident())
    def count(frame, event, arg):
        watch.calls += 1
    ch = Channel(ref)
    sys.setprofile(count)
    try:
        watch.ready.set()
        return await ch.async_receive()
    finally:
        sys.setprofile(None)

def watch_reading(key):
    watch = watched[key]
    if not watch.ready.wait(10):
        raise TimeoutError('the coroutine did not start')
    return (watch.calls, time.clock_gettime(watch.clock))

def loop_answers(key):
    # The loop's thread runs a coroutine handed to it while the reader waits.
    async def pong():
        return 'pong'
    return asyncio.run_coroutine_threadsafe(pong(), watched[key].loop).result(5)
">>).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

reader_test_() ->
    {setup, fun setup/0,
     [{"for msg in Channel(ref) with replies", fun iterate_and_reply/0},
      {"both import paths work", fun import_paths/0},
      {"receive: timeout, closed after draining", fun receive_timeout_and_closed/0},
      {"try_receive: None when empty, ChannelClosed at the end", fun try_receive_cases/0},
      {"receive_many takes batches", fun receive_many_batches/0},
      {"binary='bytes' and the context manager", fun options_and_with/0},
      {"Channel() of something else is a TypeError", fun bad_channel_argument/0},
      {timeout, 30, {"async_receive waits without burning CPU and wakes on data",
                     fun async_wait_is_event_driven/0}},
      {"async for ends at close after draining", fun async_for_drains/0},
      {timeout, 60, {"many readers, sync and async and Erlang: each message once",
                     fun mixed_readers_exactly_once/0}},
      {"a cancelled async reader hands its wake on", fun cancelled_async_hands_off/0},
      {"the owner's exit ends a blocked Python reader after draining",
       fun owner_exit_ends_python_reader/0},
      {"Python keeps the channel alive after Erlang lets go", fun python_keeps_channel/0},
      {"a channel goes through Python and back unchanged", fun channel_round_trip/0},
      {"register_callbacks: the erlang_python callback names", fun callbacks/0}]}.

uvloop_test_() ->
    {setup, fun setup/0, fun(ok) -> uvloop_tests() end}.

helpers() ->
    ok = py:exec(?HELPERS).

iterate_and_reply() ->
    helpers(),
    {ok, Ch} = py_channel:new(#{max_size => 4096}),
    Pending = py:spawn_call('__main__', serve, [Ch]),
    [ok = send_retrying(Ch, {request, self(), N}) || N <- lists:seq(1, 1000)],
    ok = py_channel:close(Ch),
    ?assertEqual({ok, 1000}, py:await(Pending, 10000)),
    Answers = [receive {<<"answer">>, V} -> V after 5000 -> missing end
               || _ <- lists:seq(1, 1000)],
    ?assertEqual([2 * N || N <- lists:seq(1, 1000)], Answers).

import_paths() ->
    ?assertEqual({ok, true},
                 py:eval(<<"__import__('erlang').Channel is __import__('erlang.channel')"
                           ".channel.Channel and __import__('erlang').ChannelClosed is "
                           "__import__('erlang.channel').channel.ChannelClosed">>)).

receive_timeout_and_closed() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    ?assertEqual({ok, <<"timeout">>}, py:call('__main__', receive_with, [Ch, 0.05])),
    ok = py_channel:send(Ch, one),
    ok = py_channel:close(Ch),
    ?assertEqual({ok, {ok, one}}, py:call('__main__', receive_with, [Ch, 5])),
    ?assertEqual({ok, <<"closed">>}, py:call('__main__', receive_with, [Ch, 5])),
    ?assertMatch({error, {'ValueError', _}}, py:call('__main__', receive_with, [Ch, -1])).

try_receive_cases() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    ?assertEqual({ok, {ok, none}}, py:call('__main__', try_receive, [Ch])),
    ok = py_channel:send(Ch, 7),
    ?assertEqual({ok, {ok, 7}}, py:call('__main__', try_receive, [Ch])),
    ok = py_channel:close(Ch),
    ?assertEqual({ok, <<"closed">>}, py:call('__main__', try_receive, [Ch])).

receive_many_batches() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    [ok = py_channel:send(Ch, N) || N <- lists:seq(1, 25)],
    ok = py_channel:close(Ch),
    {ok, Batches} = py:call('__main__', batches, [Ch, 10]),
    ?assertEqual([10, 10, 5], [length(B) || B <- Batches]),
    ?assertEqual(lists:seq(1, 25), lists:append(Batches)),
    {ok, Ch2} = py_channel:new(),
    ?assertEqual({ok, []}, py:eval(<<"Channel(ch).receive_many(5, 0.01)">>, #{ch => Ch2})).

options_and_with() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    ok = py_channel:send(Ch, <<"text">>),
    ok = py_channel:send(Ch, <<"more">>),
    ok = py_channel:close(Ch),
    ?assertEqual({ok, [<<"bytes">>, <<"bytes">>]},
                 py:eval(<<"[type(m).__name__ for m in Channel(ch, binary='bytes')]">>,
                         #{ch => Ch})),
    {ok, Ch2} = py_channel:new(),
    ok = py:exec(<<"def use_with(ref):\n"
                   "    with Channel(ref) as ch:\n"
                   "        pass\n">>),
    {ok, none} = py:call('__main__', use_with, [Ch2]),
    ?assertMatch(#{closed := true}, py_channel:info(Ch2)),
    ?assertMatch({error, {'ValueError', _}},
                 py:eval(<<"Channel(ch, binary='text')">>, #{ch => Ch2})).

bad_channel_argument() ->
    helpers(),
    ?assertMatch({error, {'TypeError', <<"Channel() needs a channel", _/binary>>}},
                 py:eval(<<"Channel(42)">>)),
    ?assertMatch({error, {'TypeError', _}}, py:eval(<<"Channel(p)">>, #{p => self()})).

async_wait_is_event_driven() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    Key = <<"asyncio">>,
    Pending = py:spawn_call('__main__', run_async, [watched_async_wait, Ch, Key]),
    ?assertEqual({data, 1}, wait_watched(Ch, Key, Pending, {data, 1})).

%% Watches a coroutine parked in `async_receive' for a second, then wakes it
%% with `Message' and returns what it received. Parked, not polling: the channel
%% counts it among its waiting readers, its thread makes no Python calls and
%% uses a small share of a core (bounds far from what polling or spinning
%% would give, whatever the load), and its event loop still runs other work.
wait_watched(Ch, Key, Pending, Message) ->
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    {ok, {Calls0, Cpu0}} = py:call('__main__', watch_reading, [Key]),
    T0 = erlang:monotonic_time(millisecond),
    timer:sleep(1000),
    {ok, {Calls1, Cpu1}} = py:call('__main__', watch_reading, [Key]),
    WallSeconds = (erlang:monotonic_time(millisecond) - T0) / 1000,
    ?assertMatch(#{waiting_readers := 1, length := 0}, py_channel:info(Ch)),
    %% A wait that polls, even every 10 ms, makes hundreds of calls a second.
    ?assert(Calls1 - Calls0 =< 10),
    %% A busy loop would use most of the second.
    ?assert(Cpu1 - Cpu0 < 0.25 * WallSeconds),
    ?assertEqual({ok, <<"pong">>}, py:call('__main__', loop_answers, [Key])),
    ok = py_channel:send(Ch, Message),
    {ok, Received} = py:await(Pending, 10000),
    ?assertMatch(#{waiting_readers := 0}, py_channel:info(Ch)),
    Received.

async_for_drains() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    Pending = py:spawn_call('__main__', run_async, [async_collect, Ch]),
    [ok = py_channel:send(Ch, N) || N <- lists:seq(1, 100)],
    timer:sleep(50),
    [ok = py_channel:send(Ch, N) || N <- lists:seq(101, 200)],
    ok = py_channel:close(Ch),
    ?assertEqual({ok, lists:seq(1, 200)}, py:await(Pending, 10000)).

mixed_readers_exactly_once() ->
    helpers(),
    ok = py:exec(<<"def thread_readers(ref, count):\n"
                   "    results = [[] for _ in range(count)]\n"
                   "    def read(out):\n"
                   "        out.extend(Channel(ref))\n"
                   "    threads = [threading.Thread(target=read, args=(r,)) for r in results]\n"
                   "    for t in threads: t.start()\n"
                   "    for t in threads: t.join()\n"
                   "    return results\n"
                   "async def coroutine_readers(ref, count):\n"
                   "    async def read():\n"
                   "        return [m async for m in Channel(ref)]\n"
                   "    return await asyncio.gather(*(read() for _ in range(count)))\n">>),
    {ok, Ch} = py_channel:new(#{max_size => 2048}),
    Parent = self(),
    Threads = py:spawn_call('__main__', thread_readers, [Ch, 3]),
    Coroutines = py:spawn_call('__main__', run_async, [coroutine_readers, Ch, 3]),
    ErlangReaders = [spawn_link(fun() -> Parent ! {self(), recv_all(Ch)} end)
                     || _ <- lists:seq(1, 2)],
    Values = lists:seq(1, 20000),
    [ok = send_retrying(Ch, V) || V <- Values],
    ok = py_channel:close(Ch),
    {ok, ThreadResults} = py:await(Threads, 30000),
    {ok, CoroutineResults} = py:await(Coroutines, 30000),
    ErlangResults = [receive {R, Vs} -> Vs after 30000 -> error(reader_hung) end
                     || R <- ErlangReaders],
    All = lists:append(ThreadResults ++ CoroutineResults ++ ErlangResults),
    ?assertEqual(Values, lists:sort(All)).

cancelled_async_hands_off() ->
    helpers(),
    ok = py:exec(<<"async def cancel_one_keep_other(ref, parent):\n"
                   "    ch = Channel(ref)\n"
                   "    first = asyncio.ensure_future(ch.async_receive())\n"
                   "    await asyncio.sleep(0.05)\n"
                   "    second = asyncio.ensure_future(ch.async_receive())\n"
                   "    await asyncio.sleep(0.05)\n"
                   "    erlang.send(parent, 'both_waiting')\n"
                   "    # The first waiter is woken by the message, then cancelled before it\n"
                   "    # can take it: the wake must reach the second.\n"
                   "    while ch.info()['length'] == 0:\n"
                   "        await asyncio.sleep(0)\n"
                   "    first.cancel()\n"
                   "    return await asyncio.wait_for(second, 5)\n">>),
    {ok, Ch} = py_channel:new(),
    Pending = py:spawn_call('__main__', run_async, [cancel_one_keep_other, Ch, self()]),
    receive <<"both_waiting">> -> ok after 5000 -> error(not_waiting) end,
    ok = py_channel:send(Ch, the_message),
    ?assertEqual({ok, the_message}, py:await(Pending, 10000)).

owner_exit_ends_python_reader() ->
    helpers(),
    Parent = self(),
    Owner = spawn(fun() ->
                          {ok, Ch} = py_channel:new(),
                          [ok = py_channel:send(Ch, N) || N <- [1, 2, 3]],
                          Parent ! {channel, Ch},
                          receive stop -> ok end
                  end),
    Ch = receive {channel, C} -> C end,
    Pending = py:spawn_call('__main__', drain, [Ch]),
    timer:sleep(100),
    Owner ! stop,
    ?assertEqual({ok, [1, 2, 3]}, py:await(Pending, 5000)).

python_keeps_channel() ->
    Parent = self(),
    {Pid, Ref} = spawn_monitor(
                   fun() ->
                           {ok, Ch} = py_channel:new(#{owner => Parent}),
                           ok = py_channel:send(Ch, still_here),
                           %% Python keeps a reader where no process namespace holds it.
                           {ok, none} = py:eval(<<"setattr(__import__('builtins'), "
                                                  "'kept_reader', __import__('erlang').Channel(ch))">>,
                                                #{ch => Ch})
                   end),
    receive {'DOWN', Ref, process, Pid, normal} -> ok end,
    [erlang:garbage_collect(P) || P <- processes()],
    ?assertEqual({ok, still_here},
                 py:eval(<<"__import__('builtins').kept_reader.receive(5)">>)).

channel_round_trip() ->
    {ok, Ch} = py_channel:new(),
    ?assertEqual({ok, true}, py:eval(<<"__import__('erlang').Channel(ch).ref == ch">>,
                                     #{ch => Ch})),
    {ok, Back} = py:eval(<<"__import__('erlang').Channel(ch).ref">>, #{ch => Ch}),
    ?assert(Back =:= Ch).

callbacks() ->
    ok = py_channel:register_callbacks(),
    ok = py_channel:register_callbacks(),
    {ok, Ch} = py_channel:new(#{max_size => 1000}),
    ok = py_channel:send(Ch, first),
    ok = py_channel:send(Ch, second),
    Call = fun(Code) -> py:eval(Code, #{ch => Ch}) end,
    ?assertMatch({ok, #{size := S, max_size := 1000, closed := false}} when S > 0,
                 Call(<<"__import__('erlang').call('_py_channel_info', ch)">>)),
    ?assertEqual({ok, {ok, first}},
                 Call(<<"__import__('erlang').call('_py_channel_receive', ch)">>)),
    ?assertEqual({ok, {ok, second}},
                 Call(<<"__import__('erlang').call('_py_channel_try_receive', ch)">>)),
    ?assertEqual({ok, {error, empty}},
                 Call(<<"__import__('erlang').call('_py_channel_try_receive', ch)">>)),
    ?assertEqual({ok, {error, timeout}},
                 Call(<<"__import__('erlang').call('_py_channel_receive', ch, 10)">>)),
    ?assertEqual({ok, {error, timeout}},
                 Call(<<"__import__('erlang').call('_py_channel_wait', ch, 10)">>)),
    ok = py_channel:send(Ch, third),
    ?assertEqual({ok, ok}, Call(<<"__import__('erlang').call('_py_channel_wait', ch, 1000)">>)),
    ?assertEqual({ok, ok}, Call(<<"__import__('erlang').call('_py_channel_cancel_wait', ch)">>)).

%% uvloop is not in the standard library: it is used when the embedded Python
%% can import it, or from the virtualenv `_build/test-venv/<major.minor>' (under
%% the directory the tests run from) that `make test' prepares; the test never
%% installs anything. Without uvloop it is skipped, saying so.
uvloop_tests() ->
    case py_test_support:uvloop_available() of
        true ->
            [{timeout, 60, {"async_receive on uvloop", fun uvloop_loop/0}}];
        {false, Venv} ->
            [{"async_receive on uvloop: SKIPPED, uvloop is not importable and " ++ Venv ++
                  " has none", fun() -> ok end}]
    end.

uvloop_loop() ->
    helpers(),
    ok = py:exec(<<"import uvloop\n"
                   "def run_uvloop(name, *args):\n"
                   "    loop = uvloop.new_event_loop()\n"
                   "    try:\n"
                   "        return loop.run_until_complete(globals()[name](*args))\n"
                   "    finally:\n"
                   "        loop.close()\n"
                   "async def uvloop_wait(ref, key):\n"
                   "    kind = type(asyncio.get_running_loop()).__module__\n"
                   "    return (kind, await watched_async_wait(ref, key))\n">>),
    {ok, Ch} = py_channel:new(),
    Key = <<"uvloop">>,
    Pending = py:spawn_call('__main__', run_uvloop, [uvloop_wait, Ch, Key]),
    {Kind, Message} = wait_watched(Ch, Key, Pending, on_uvloop),
    ?assertMatch({match, _}, re:run(Kind, "uvloop")),
    ?assertEqual(on_uvloop, Message).

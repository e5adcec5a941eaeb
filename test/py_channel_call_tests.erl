%% Request/reply through a channel with py_channel:call/3 (issue 17): the
%% caller looks for its reply before it sleeps, and a reply that comes
%% meanwhile is kept for it, not sent.
-module(py_channel_call_tests).

-include_lib("eunit/include/eunit.hrl").

-export([leave_core/1]).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

call_test_() ->
    {setup, fun setup/0,
     [{"a Python reader answers each call once, kept for the looking caller or sent",
       fun python_answers/0},
      {"a reader written for {Pid, Request} and reply(pid, term) serves call/3 unchanged",
       fun pid_style_reader/0},
      {"replies from threads Python started", fun thread_replies/0},
      {"a slow reply reaches a caller that stopped looking; a large one is sent",
       fun slow_and_large_replies/0},
      {"a call that times out gets no late reply; Python's reply says False",
       fun timeout_drops_late_reply/0},
      {"a second reply is a ValueError in Python, {error, already_replied} in Erlang",
       fun second_reply/0},
      {"an Erlang reader answers with reply/2", fun erlang_reader/0},
      {"a caller that exits while waiting: the reply is dropped, False",
       fun caller_exits/0},
      {"closed, too_large, a full channel's timeout and bad timeouts queue nothing",
       fun call_errors/0},
      {"erlang.Caller: its pid, equality, repr, and the same term back in Erlang",
       fun caller_object/0},
      {"requests of every shape: encoded, copied as terms, and after waiting for room",
       fun request_shapes/0},
      {"requests never read hold their callers only until the channel goes",
       fun unread_requests_freed/0},
      {"a process's callers are renewed call after call: nothing grows on its binary heap",
       fun callers_renewed/0},
      {"a caller a Python reader still holds is never renewed: its late reply reaches no "
       "later call", fun held_by_python_not_renewed/0},
      {"a caller an Erlang reader has as a term is never renewed: its late reply reaches no "
       "later call", fun held_by_erlang_not_renewed/0},
      {timeout, 60, {"replies racing the caller's last look: each call gets its own reply, once",
                     fun replies_race_the_last_look/0}},
      {timeout, 60, {"replies racing timeouts, callers renewed between: a reply is its own "
                     "call's or none", fun replies_race_timeouts/0}},
      {timeout, 60, {"a reader on a threading.Thread serves calls, some of whose callers are "
                     "killed as they look: the others get their own replies, no stray message",
                     fun thread_reader_killed_callers/0}},
      {timeout, 60, {"a Python reader spinning on its caller's core is asked to move off it, "
                     "and does", fun reader_leaves_callers_core/0}}]}.

-define(SERVERS, <<"
import time
import erlang

def serve(ref):
    for caller, request in Channel(ref):
        reply(caller, ('echo', request, isinstance(caller, erlang.Caller)))

def serve_slowly(ref, seconds, report):
    for caller, request in Channel(ref):
        time.sleep(seconds)
        erlang.send(report, ('replied', reply(caller, request)))

def serve_twice(ref, report):
    for caller, request in Channel(ref):
        reply(caller, request)
        try:
            reply(caller, request)
            erlang.send(report, 'no error')
        except ValueError as error:
            erlang.send(report, ('ValueError', str(error)))

def serve_in_threads(ref):
    import threading
    threads = []
    for caller, n in Channel(ref):
        thread = threading.Thread(target=reply, args=(caller, [n, {'n': n}] if n % 2 else n))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()

def serve_after(ref):
    # Busy for about as long as a caller looks (await_spin, 20 us), more or less.
    clock = time.perf_counter_ns
    for caller, (n, delay_ns) in Channel(ref):
        start = clock()
        while clock() - start < delay_ns:
            pass
        reply(caller, n if n % 2 else {'n': n})

def serve_holding(ref, report):
    held = []
    for caller, request in Channel(ref):
        if request == 'hold':
            held.append(caller)
        elif request == 'release':
            erlang.send(report, ('late', [reply(late, 'late') for late in held]))
            held.clear()
            reply(caller, 'released')
        else:
            reply(caller, request)

def serve_large(ref):
    for caller, size in Channel(ref):
        reply(caller, b'x' * size)

def serve_from_a_thread(ref):
    # The reader is a thread the project did not start; its binding must be
    # as it was once it is done (it may be asked to move off a caller's core).
    import os, threading
    before = os.sched_getaffinity(0) if hasattr(os, 'sched_getaffinity') else None
    after = []
    def read():
        for caller, n in Channel(ref):
            reply(caller, n)
        after.append(os.sched_getaffinity(0) if before is not None else None)
    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    return after == [before]
">>).

servers() ->
    ok = py:exec(?SERVERS).

serve(Function, Args) ->
    {ok, Ch} = py_channel:new(),
    servers(),
    Pending = py:spawn_call('__main__', Function, [Ch | Args]),
    {Ch, Pending}.

stop({Ch, Pending}) ->
    ok = py_channel:close(Ch),
    {ok, none} = py:await(Pending, 10000).

mailbox() ->
    {messages, Messages} = process_info(self(), messages),
    Messages.

python_answers() ->
    Server = {Ch, _} = serve(serve, []),
    [?assertEqual({ok, {<<"echo">>, N, true}}, py_channel:call(Ch, N, 5000))
     || N <- lists:seq(1, 3000)],
    %% Many callers at once: each gets its own reply.
    Self = self(),
    Callers = [spawn_link(fun() ->
                                  Replies = [py_channel:call(Ch, {I, N}) || N <- lists:seq(1, 300)],
                                  Self ! {self(), Replies}
                          end) || I <- lists:seq(1, 4)],
    lists:foreach(
      fun({I, Caller}) ->
              receive
                  {Caller, Replies} ->
                      ?assertEqual([{ok, {<<"echo">>, {I, N}, true}} || N <- lists:seq(1, 300)],
                                   Replies)
              end
      end, lists:zip(lists:seq(1, 4), Callers)),
    stop(Server),
    ?assertEqual([], mailbox()).

pid_style_reader() ->
    {ok, Ch} = py_channel:new(),
    ok = py:exec(<<"
def serve_pids(ref):
    for pid, n in Channel(ref):
        reply(pid, n * n)
">>),
    Pending = py:spawn_call('__main__', serve_pids, [Ch]),
    ?assertEqual({ok, 49}, py_channel:call(Ch, 7)),
    stop({Ch, Pending}).

slow_and_large_replies() ->
    Slow = {Ch, _} = serve(serve_slowly, [0.05, self()]),
    ?assertEqual({ok, slow}, py_channel:call(Ch, slow, 5000)),
    receive {<<"replied">>, Delivered} -> ?assert(Delivered) end,
    stop(Slow),
    Large = {Big, _} = serve(serve_large, []),
    %% Kept beside the caller's state, kept boxed (up to 4 KiB, the limit of a flat
    %% encoding: lists:seq(90, 130) spans the first limit), and sent.
    [?assertEqual({ok, binary:copy(<<"x">>, Size)}, py_channel:call(Big, Size))
     || Size <- [0, 10 | lists:seq(90, 130)] ++ [1000, 4000, 70000, 1 bsl 20, 100]],
    stop(Large),
    ?assertEqual([], mailbox()).

timeout_drops_late_reply() ->
    Server = {Ch, _} = serve(serve_slowly, [0.2, self()]),
    ?assertEqual({error, timeout}, py_channel:call(Ch, late, 20)),
    receive {<<"replied">>, Delivered} -> ?assertNot(Delivered) end,
    timer:sleep(50),
    ?assertEqual([], mailbox()),
    %% The next call is answered as usual.
    ?assertEqual({ok, next}, py_channel:call(Ch, next, 5000)),
    receive {<<"replied">>, true} -> ok end,
    stop(Server),
    ?assertEqual([], mailbox()).

second_reply() ->
    Server = {Ch, _} = serve(serve_twice, [self()]),
    ?assertEqual({ok, once}, py_channel:call(Ch, once)),
    receive
        Report -> ?assertMatch({<<"ValueError">>, <<"this call was already replied to", _/binary>>},
                               Report)
    end,
    stop(Server),
    ?assertEqual([], mailbox()).

erlang_reader() ->
    {ok, Ch} = py_channel:new(),
    Self = self(),
    Reader = spawn_link(
               fun() ->
                       {ok, {Caller, {add, A, B}}} = py_channel:recv(Ch, 5000),
                       First = py_channel:reply(Caller, A + B),
                       Second = py_channel:reply(Caller, again),
                       Self ! {replies, First, Second}
               end),
    ?assertEqual({ok, 5}, py_channel:call(Ch, {add, 2, 3})),
    receive {replies, First, Second} ->
            ?assertEqual(ok, First),
            ?assertEqual({error, already_replied}, Second)
    end,
    unlink(Reader),
    ?assertError(badarg, py_channel:reply(self(), x)),
    ?assertError(badarg, py_channel:reply(make_ref(), x)),
    ?assertEqual([], mailbox()).

thread_reader_killed_callers() ->
    {ok, Ch} = py_channel:new(),
    servers(),
    Pending = py:spawn_call('__main__', serve_from_a_thread, [Ch]),
    Self = self(),
    Callers = [spawn(fun() ->
                             Self ! {self(), [{N, py_channel:call(Ch, N, 5000)}
                                              || N <- lists:seq(I * 10000, I * 10000 + 2000)]}
                     end) || I <- [1, 2]],
    %% Callers killed at once, as they look or sleep for their replies.
    Killed = [spawn(fun() -> py_channel:call(Ch, killed, 5000) end) || _ <- lists:seq(1, 200)],
    [exit(Pid, kill) || Pid <- Killed],
    [receive
         {Caller, Outcomes} ->
             ?assertEqual([], [Wrong || {N, Outcome} = Wrong <- Outcomes, Outcome =/= {ok, N}])
     end || Caller <- Callers],
    ok = py_channel:close(Ch),
    ?assertEqual({ok, true}, py:await(Pending, 10000)),
    ?assertEqual([], mailbox()).

caller_exits() ->
    Server = {Ch, _} = serve(serve_slowly, [0.1, self()]),
    {Caller, Monitor} = spawn_monitor(fun() -> py_channel:call(Ch, never_read, infinity) end),
    timer:sleep(20),
    exit(Caller, kill),
    receive {'DOWN', Monitor, process, Caller, killed} -> ok end,
    receive {<<"replied">>, Delivered} -> ?assertNot(Delivered) end,
    stop(Server),
    ?assertEqual([], mailbox()).

call_errors() ->
    {ok, Closed} = py_channel:new(),
    ok = py_channel:close(Closed),
    ?assertEqual({error, closed}, py_channel:call(Closed, x)),
    {ok, Small} = py_channel:new(#{max_size => 1000}),
    ?assertEqual({error, too_large}, py_channel:call(Small, binary:copy(<<"x">>, 2000))),
    ok = py_channel:send(Small, binary:copy(<<"y">>, 700)),
    ?assertEqual({error, timeout}, py_channel:call(Small, binary:copy(<<"z">>, 400), 30)),
    ?assertMatch(#{length := 1}, py_channel:info(Small)),
    ?assertError(badarg, py_channel:call(Small, x, -1)),
    ?assertError(badarg, py_channel:call(Small, x, soon)),
    ?assertMatch(#{length := 1}, py_channel:info(Small)),
    ?assertEqual([], mailbox()).

caller_object() ->
    {ok, Ch} = py_channel:new(),
    ok = py:exec(<<"
def inspect(caller):
    return (caller, caller.pid, caller == caller, hash(caller) == hash(caller), repr(caller))
">>),
    Self = self(),
    spawn_link(fun() -> Self ! {called, py_channel:call(Ch, hello, 5000)} end),
    {ok, {Caller, hello}} = py_channel:recv(Ch, 5000),
    {ok, {Back, Pid, Equal, SameHash, Repr}} = py:call('__main__', inspect, [Caller]),
    ?assert(Back =:= Caller),
    ?assertEqual(true, Equal),
    ?assertEqual(true, SameHash),
    ?assert(is_pid(Pid)),
    ?assertEqual(<<"Caller(", (list_to_binary(pid_to_list(Pid)))/binary, ")">>, Repr),
    ok = py_channel:reply(Caller, world),
    receive {called, Called} -> ?assertEqual({ok, world}, Called) end,
    ?assertEqual([], mailbox()).

request_shapes() ->
    Server = {Ch, _} = serve(serve, []),
    Requests = [7, {a, [1, 2.5], <<"bin">>}, #{key => value}, binary:copy(<<"x">>, 100000),
                1 bsl 100, [self(), make_ref()]],
    [?assertMatch({ok, {<<"echo">>, _, true}}, py_channel:call(Ch, Request)) || Request <- Requests],
    {ok, {<<"echo">>, Map, true}} = py_channel:call(Ch, #{key => value}),
    ?assertEqual(#{key => value}, Map),
    stop(Server),
    %% An Erlang reader gets {Caller, Request} whichever way it was stored.
    {ok, Ch2} = py_channel:new(#{max_size => 2000}),
    Self = self(),
    [spawn_link(fun() -> Self ! {called, Request, py_channel:call(Ch2, Request, 5000)} end)
     || Request <- [small, #{map => 1}, binary:copy(<<"y">>, 1500)]],
    Replies = [begin
                   {ok, {Caller, Request}} = py_channel:recv(Ch2, 5000),
                   ok = py_channel:reply(Caller, {back, Request}),
                   receive {called, Request, Called} -> Called end
               end || _ <- [1, 2, 3]],
    ?assertEqual(3, length([ok || {ok, {back, _}} <- Replies])),
    ?assertEqual([], mailbox()).

unread_requests_freed() ->
    erlang:garbage_collect(),
    Before = erlang:memory(binary),
    {ok, Ch} = py_channel:new(),
    [{error, timeout} = py_channel:call(Ch, N, 0) || N <- lists:seq(1, 20000)],
    ?assertMatch(#{length := 20000}, py_channel:info(Ch)),
    Held = erlang:memory(binary) - Before,
    ok = py_channel:close(Ch),
    erlang:garbage_collect(),
    %% The channel goes with its last reference; its frames, and the callers they hold, go with it.
    py_test_support:wait_until(fun() ->
                                       erlang:garbage_collect(),
                                       erlang:memory(binary) - Before < Held div 4
                               end),
    ?assert(Held > 20000 * 50),
    ?assertEqual([], mailbox()).

%% A caller per call was a resource on the caller's virtual binary heap (85 words), and
%% they died in its garbage collections hundreds at a time. No collection runs here (a
%% large heap), so every caller made would still be counted.
callers_renewed() ->
    Server = {Ch, _} = serve(serve, []),
    Parent = self(),
    Calls = 500,
    {Pid, Monitor} =
        spawn_opt(fun() ->
                          [{ok, _} = py_channel:call(Ch, N) || N <- lists:seq(1, 10)],
                          Before = py_test_support:binary_heap(),
                          Replies = [py_channel:call(Ch, N) || N <- lists:seq(1, Calls)],
                          Parent ! {self(), Replies, Before, py_test_support:binary_heap()}
                  end,
                  [monitor, {min_heap_size, 1000000}, {min_bin_vheap_size, 10000000}]),
    receive
        {Pid, Replies, {WordsBefore, Collections}, {WordsAfter, CollectionsAfter}} ->
            ?assertEqual([{ok, {<<"echo">>, N, true}} || N <- lists:seq(1, Calls)], Replies),
            ?assertEqual(Collections, CollectionsAfter),
            ?assertEqual(WordsBefore, WordsAfter)
    end,
    receive {'DOWN', Monitor, process, Pid, normal} -> ok end,
    stop(Server),
    ?assertEqual([], mailbox()).

held_by_python_not_renewed() ->
    Server = {Ch, _} = serve(serve_holding, [self()]),
    ?assertEqual({error, timeout}, py_channel:call(Ch, hold, 20)),
    ?assertEqual({error, timeout}, py_channel:call(Ch, hold, 20)),
    [?assertEqual({ok, N}, py_channel:call(Ch, N)) || N <- lists:seq(1, 50)],
    ?assertEqual({ok, <<"released">>}, py_channel:call(Ch, release)),
    receive Late -> ?assertEqual({<<"late">>, [false, false]}, Late) end,
    [?assertEqual({ok, N}, py_channel:call(Ch, N)) || N <- lists:seq(51, 100)],
    stop(Server),
    ?assertEqual([], mailbox()).

held_by_erlang_not_renewed() ->
    {ok, Ch} = py_channel:new(),
    Self = self(),
    Serve = fun Serve(Held) ->
                    case py_channel:recv(Ch, 5000) of
                        {ok, {Caller, hold}} ->
                            Serve([Caller | Held]);
                        {ok, {Caller, release}} ->
                            Self ! {late, [py_channel:reply(Late, late) || Late <- Held]},
                            ok = py_channel:reply(Caller, released),
                            Serve([]);
                        {ok, {Caller, N}} ->
                            ok = py_channel:reply(Caller, N),
                            Serve(Held);
                        {error, closed} ->
                            ok
                    end
            end,
    Reader = spawn_link(fun() -> Serve([]) end),
    ?assertEqual({error, timeout}, py_channel:call(Ch, hold, 20)),
    [?assertEqual({ok, N}, py_channel:call(Ch, N)) || N <- lists:seq(1, 50)],
    ?assertEqual({ok, released}, py_channel:call(Ch, release)),
    receive Late -> ?assertEqual({late, [ok]}, Late) end,
    [?assertEqual({ok, N}, py_channel:call(Ch, N)) || N <- lists:seq(51, 100)],
    ok = py_channel:close(Ch),
    unlink(Reader),
    ?assertEqual([], mailbox()).

replies_race_the_last_look() ->
    Server = {Ch, _} = serve(serve_after, []),
    Calls = [{N, 10000 + (N * 7919) rem 20000} || N <- lists:seq(1, 4000)],
    Replies = [py_channel:call(Ch, Call, 5000) || Call <- Calls],
    Expected = [case N rem 2 of 1 -> {ok, N}; 0 -> {ok, #{<<"n">> => N}} end || {N, _} <- Calls],
    ?assertEqual(Expected, Replies),
    stop(Server),
    ?assertEqual([], mailbox()).

%% Every other call gives up at once (a timeout of 0) while Python answers each after up to
%% 40 us: a caller whose reply comes late is held by Python until it has replied, and is
%% renewed for a later call only then, so a reply reaches its own call or nobody.
replies_race_timeouts() ->
    Server = {Ch, _} = serve(serve_after, []),
    Self = self(),
    Callers =
        [spawn_link(
           fun() ->
                   Outcomes = [{N, py_channel:call(Ch, {N, (N * 7919) rem 40000}, N rem 2)}
                               || N <- lists:seq(I * 100000, I * 100000 + 2000)],
                   {messages, Stray} = process_info(self(), messages),
                   Self ! {self(), Outcomes, Stray}
           end) || I <- [1, 2]],
    [receive
         {Caller, Outcomes, Stray} ->
             ?assertEqual([], Stray),
             ?assertEqual([], [Wrong || {N, Outcome} = Wrong <- Outcomes,
                                        Outcome =/= {error, timeout},
                                        Outcome =/= {ok, N},
                                        Outcome =/= {ok, #{<<"n">> => N}}]),
             %% Some of each.
             ?assert(lists:keymember({error, timeout}, 2, Outcomes)),
             ?assert(lists:any(fun({_, Outcome}) -> Outcome =/= {error, timeout} end, Outcomes))
     end || Caller <- Callers],
    stop(Server),
    ?assertEqual([], mailbox()).

thread_replies() ->
    Server = {Ch, _} = serve(serve_in_threads, []),
    Self = self(),
    Callers = [spawn_link(fun() -> Self ! {N, py_channel:call(Ch, N, 5000)} end)
               || N <- lists:seq(1, 200)],
    [receive {N, Reply} when N rem 2 =:= 1 -> ?assertEqual({ok, [N, #{<<"n">> => N}]}, Reply);
             {N, Reply} -> ?assertEqual({ok, N}, Reply) end
     || N <- lists:seq(1, length(Callers))],
    stop(Server),
    ?assertEqual([], mailbox()).

%% On a node whose schedulers are bound to cores (`+sbt db'), a caller's core
%% is its scheduler's. A caller whose request no reader has taken asks where
%% the channel's Python reader spins (`caller_look_on/2', as `call/3' does 5
%% microseconds in): on its own core the reader is asked to move off it, and
%% then spins on another (`held_up': the caller would look on), with its
%% binding as before. The caller looks every 10 ms, leaving the core to
%% the reader, so the OS seldom moves it by itself (without the ask it did in
%% 2 runs of 6). Linux only.
reader_leaves_callers_core() ->
    py_test_support:on_bound_peer(?MODULE, fun(Call, [SchedulerOnesCore | _]) ->
        ?assertEqual({held_up, true}, Call(?MODULE, leave_core, [SchedulerOnesCore]))
    end).

-define(SPIN_READER, <<"
import os

def spin_reading(ref, core):
    vm_cores = os.sched_getaffinity(os.getpid())
    os.sched_setaffinity(0, {core})
    os.sched_setaffinity(0, vm_cores)
    channel = Channel(ref)
    while True:
        try:
            if channel.receive(timeout=0.00004) == 'stop':
                return os.sched_getaffinity(0) == vm_cores
        except TimeoutError:
            pass
">>).

%% Run on the peer: a Python reader starts on `Core', scheduler 1's, free to
%% run on every core; a process on scheduler 1 looks on for the request it
%% sent to another channel. Answers what the look came to and whether the
%% reader's binding was the VM's at the end.
-spec leave_core(non_neg_integer()) -> {held_up | not_taken, boolean()}.
leave_core(Core) ->
    ok = py:exec(?SPIN_READER),
    {ok, Ch} = py_channel:new(),
    {ok, Unread} = py_channel:new(),
    Reader = py:spawn_call('__main__', spin_reading, [Ch, Core]),
    Self = self(),
    {Looker, Monitor} =
        spawn_opt(fun() ->
                          {ok, Caller} = py_channel_nif:call_send(Unread, 1, request, []),
                          Self ! {self(), look_on_until_held_up(Caller, Ch, 50)}
                  end, [monitor, {scheduler, 1}]), % (undocumented: runs it on scheduler 1 only)
    Outcome = receive {Looker, Looked} -> Looked end,
    receive {'DOWN', Monitor, process, Looker, normal} -> ok end,
    ok = py_channel:send(Ch, <<"stop">>),
    {ok, KeptItsBinding} = py:await(Reader, 5000),
    {Outcome, KeptItsBinding}.

look_on_until_held_up(_Caller, _Ch, 0) ->
    not_taken;
look_on_until_held_up(Caller, Ch, Looks) ->
    case py_channel_nif:caller_look_on(Caller, Ch) of
        held_up -> held_up;
        not_taken -> timer:sleep(10), look_on_until_held_up(Caller, Ch, Looks - 1)
    end.

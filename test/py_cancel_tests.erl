%% Stopping Python (issue 11): py:cancel/1, timeouts that cancel, a caller's
%% exit, and waits that wake at once.
-module(py_cancel_tests).

-include_lib("eunit/include/eunit.hrl").

-define(HELPERS, <<"
import builtins, threading, time
import erlang

# Shared by every process's namespace: the caller-exit test spins in another process.
spins = builtins.__dict__.setdefault('py_cancel_tests_spins', {})

def spin(name):
    '''Burns CPU until cancelled; records its thread for CPU measurements.'''
    spins[name] = threading.get_ident()
    while True:
        pass

def cpu_seconds(name):
    return time.clock_gettime(time.pthread_getcpuclockid(spins[name]))

cleaned = []

def consume(ref):
    try:
        for message in Channel(ref):
            pass
    finally:
        cleaned.append(ref)

def call_blocking():
    return erlang.call('py_cancel_tests_block')

def wait_then_clean_up(kind, ref):
    '''Waits in a channel or in erlang.call, then cleans up at length: longer than the
    interpreter's switch interval, so that a second Cancelled would land in the cleanup.'''
    try:
        if kind == 'channel':
            for message in Channel(ref):
                pass
        else:
            erlang.call('py_cancel_tests_block')
    finally:
        total = 0
        for i in range(3_000_000):
            total += i
        cleaned.append((kind, ref))
">>).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

cancel_test_() ->
    {setup, fun setup/0,
     [{"a timeout stops a busy loop", fun timeout_stops_busy_loop/0},
      {"exec and eval take a timeout that stops the code", fun exec_eval_timeouts/0},
      {"a consumer blocked in for msg in ch is cancelled at once",
       fun cancel_blocked_consumer/0},
      {"a wait in erlang.call is cancelled", fun cancel_erlang_call/0},
      {timeout, 30, {"a cancelled wait raises once: the cleanup after it runs to its end",
                     fun cancel_raised_once/0}},
      {"a finished call is unaffected", fun cancel_after_done/0},
      {"the caller's exit stops its call", fun caller_exit_cancels/0},
      {"the caller's exit after its calls are done stops no one else's",
       fun caller_exit_after_done/0},
      {"cancelled as soon as submitted: each call completes or stops", fun cancel_before_start/0},
      {timeout, 60, {"a cancel racing the start never leaves the code running",
                     fun cancel_racing_start/0}},
      {"the worker runs later jobs normally", fun later_jobs_unaffected/0}]}.

helpers() ->
    ok = py:exec(?HELPERS).

timeout_stops_busy_loop() ->
    helpers(),
    ?assertEqual({error, timeout}, py:call('__main__', spin, [<<"timeout">>], #{}, 200)),
    assert_stopped(<<"timeout">>).

exec_eval_timeouts() ->
    helpers(),
    ?assertEqual({error, timeout},
                 py:exec(<<"spin('exec')">>, #{timeout => 200})),
    assert_stopped(<<"exec">>),
    ?assertEqual({error, timeout}, py:eval(<<"spin('eval')">>, #{}, 200)),
    assert_stopped(<<"eval">>),
    ?assertEqual(ok, py:exec(py:context(), <<"x = 1">>, #{timeout => 5000})),
    ?assertError(badarg, py:exec(<<"x = 1">>, #{timeout => -1})),
    ?assertError(badarg, py:exec(<<"x = 1">>, #{tiemout => 1})).

%% The spinning thread's CPU time no longer grows.
assert_stopped(Name) ->
    timer:sleep(100),
    {ok, Before} = py:call('__main__', cpu_seconds, [Name]),
    timer:sleep(300),
    {ok, After} = py:call('__main__', cpu_seconds, [Name]),
    ?assert(After - Before < 0.05).

cancel_blocked_consumer() ->
    helpers(),
    {ok, Ch} = py_channel:new(),
    Pending = py:spawn_call('__main__', consume, [Ch]),
    py_test_support:wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    Started = erlang:monotonic_time(millisecond),
    ok = py:cancel(Pending),
    ?assertEqual({error, cancelled}, py:await(Pending, 5000)),
    Elapsed = erlang:monotonic_time(millisecond) - Started,
    ?assert(Elapsed < 100),
    %% Its finally ran, and the channel lost nothing: terms sent now wait for the next reader.
    ?assertMatch({ok, [_]}, py:eval(<<"cleaned[-1:]">>)),
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))),
    ok = py_channel:send(Ch, after_cancel),
    ?assertEqual({ok, after_cancel}, py_channel:try_receive(Ch)).

cancel_erlang_call() ->
    helpers(),
    ok = py:register_function(py_cancel_tests_block,
                              fun(_) -> receive never -> ok end end),
    Pending = py:spawn_call('__main__', call_blocking, []),
    timer:sleep(200),
    ok = py:cancel(Pending),
    ?assertEqual({error, cancelled}, py:await(Pending, 5000)).

cancel_raised_once() ->
    helpers(),
    ok = py:register_function(py_cancel_tests_block,
                              fun(_) -> receive never -> ok end end),
    {ok, Ch} = py_channel:new(),
    lists:foreach(
      fun(Kind) ->
              Pending = py:spawn_call('__main__', wait_then_clean_up, [Kind, Ch]),
              timer:sleep(200),
              ok = py:cancel(Pending),
              ?assertEqual({error, cancelled}, py:await(Pending, 20000)),
              ?assertMatch({ok, [{Kind, _}]}, py:eval(<<"cleaned[-1:]">>))
      end, [<<"channel">>, <<"call">>]).

cancel_after_done() ->
    Pending = py:spawn_call(math, sqrt, [4]),
    timer:sleep(200),
    ok = py:cancel(Pending),
    ?assertEqual({ok, 2.0}, py:await(Pending, 5000)).

caller_exit_cancels() ->
    helpers(),
    Caller = spawn(fun() ->
                           helpers(),
                           py:call('__main__', spin, [<<"caller">>], #{}, infinity)
                   end),
    py_test_support:wait_until(
      fun() -> py:eval(<<"'caller' in spins">>) =:= {ok, true} end),
    exit(Caller, kill),
    assert_stopped(<<"caller">>).

%% A namespace keeps the tokens of its finished jobs until its owner next
%% submits one, and its owner's exit cancels them: that must not reach the job
%% a worker runs now for another caller, on the thread those jobs ran on.
caller_exit_after_done() ->
    ok = py:exec(<<"import time\ndef nap(seconds):\n    time.sleep(seconds)\n    return 'slept'">>),
    Parent = self(),
    Done = spawn(fun() ->
                         [{ok, 4.0} = py:call(math, sqrt, [16]) || _ <- lists:seq(1, 100)],
                         Pending = py:spawn_call(math, sqrt, [25]),
                         {ok, 5.0} = py:await(Pending),
                         Parent ! {self(), done},
                         receive stop -> ok end
                 end),
    receive {Done, done} -> ok end,
    %% The workers the finished jobs ran on take these: every one of them is busy.
    Naps = [py:spawn_call('__main__', nap, [0.3]) || _ <- lists:seq(1, 4)],
    timer:sleep(50),
    exit(Done, kill),
    ?assertEqual([{ok, <<"slept">>} || _ <- Naps], [py:await(P, 5000) || P <- Naps]).

cancel_before_start() ->
    ok = py:exec(<<"ran = []\ndef mark():\n    ran.append(1)\n">>),
    %% Cancelled in the same breath as submitted: before the job starts, or while it runs.
    Pendings = [begin P = py:spawn_call('__main__', mark, []), ok = py:cancel(P), P end
                || _ <- lists:seq(1, 20)],
    Results = [py:await(P, 5000) || P <- Pendings],
    %% Every call answers, each either completed or stopped; none is lost or stuck.
    ?assertEqual([], [R || R <- Results, R =/= {error, cancelled}, R =/= {ok, none}]),
    {ok, Ran} = py:eval(<<"len(ran)">>),
    ?assert(Ran >= length([R || R <- Results, R =:= {ok, none}])).

cancel_racing_start() ->
    ok = py:exec(<<"def forever():\n    while True:\n        pass\n">>),
    Results = [begin
                   P = py:spawn_call('__main__', forever, []),
                   ok = py:cancel(P),
                   py:await(P, 5000)
               end || _ <- lists:seq(1, 100)],
    ?assertEqual([], [R || R <- Results, R =/= {error, cancelled}]).

later_jobs_unaffected() ->
    [?assertEqual({ok, 4.0}, py:call(math, sqrt, [16])) || _ <- lists:seq(1, 200)].

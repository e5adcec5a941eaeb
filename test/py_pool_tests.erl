%% EUnit suite for the worker threads Python runs on: every job starts at
%% once, whatever the workers were doing when it came.
-module(py_pool_tests).

-include_lib("eunit/include/eunit.hrl").

-export([cores_of_jobs_at_once/1, looks_on_handed_jobs/3, killed_while_looking_on/2]).

%% A channel consumer: it says when it started, then keeps its worker busy
%% until the channel is closed.
-define(CONSUMER, <<"
import erlang
from erlang.channel import Channel

def consume(ref, pid, index):
    erlang.send(pid, (erlang.Atom('started'), index))
    return sum(1 for _ in Channel(ref))
">>).

%% What a thread remembers between jobs: `threading.local' lives in the
%% thread's Python thread state.
-define(THREAD_MEMORY, <<"
import threading
_remembered = threading.local()

def remember():
    me = threading.get_ident()
    before = getattr(_remembered, 'ident', None)
    _remembered.ident = me
    return (me, before)
">>).

%% Something kept by a thread, that says when it is let go.
-define(HELD_BY_THREAD, <<"
import threading
import erlang
_held = threading.local()

class Announcer:
    def __init__(self, pid, index):
        self.pid, self.index = pid, index

    def __del__(self):
        erlang.send(self.pid, (erlang.Atom('let_go'), self.index))

def hold(ref, pid, index):
    _held.announcer = Announcer(pid, index)
    erlang.send(pid, (erlang.Atom('started'), index))
    return sum(1 for _ in Channel(ref))
">>).

%% The cores a job's thread may run on, and those of a `threading.Thread' it
%% starts, answered once the channel closes.
-define(THREAD_CORES, <<"
import os
import threading
import erlang
from erlang.channel import Channel

def thread_cores(ref, pid):
    erlang.send(pid, erlang.Atom('started'))
    for _ in Channel(ref):
        pass
    seen = []
    own = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))
    own.start()
    own.join()
    return [sorted(os.sched_getaffinity(0))] + seen
">>).

%% A job stuck behind a sleeping worker waits for its 30 s idle timeout; a job
%% started at once takes well under a millisecond. One second is far from both.
-define(START_BOUND_MS, 1000).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

pool_test_() ->
    {setup, fun setup/0,
     [{timeout, 300, {"every job of a burst of spawn_calls starts at once",
                      fun bursts_start_at_once/0}},
      {timeout, 60, {"a worker thread keeps its Python thread state from job to job",
                     fun thread_state_kept/0}},
      {timeout, 90, {"a worker thread that exits lets go of its Python thread state",
                     fun exited_thread_lets_go/0}},
      {timeout, 60, {"Python threads may use every core the VM may, schedulers bound or not",
                     fun unbound_by_scheduler_binding/0}},
      {timeout, 120, {"a caller whose job waits for a watcher held up on another core looks "
                      "on; one on its own core, it gives it up; callers killed as they look "
                      "leave nothing behind",
                      fun look_on_held_up_watcher/0}}]}.

%% Bursts of 12 to 30 consumers submitted back to back; between bursts the
%% previous burst's workers are running, spinning or asleep, in every mix
%% the pauses produce.
bursts_start_at_once() ->
    ok = py:exec(?CONSUMER),
    Pauses = [0, 1, 0, 3, 10, 0, 30],
    lists:foreach(
      fun(Round) ->
              burst(Round, 12 + Round rem 19),
              timer:sleep(lists:nth(1 + Round rem length(Pauses), Pauses))
      end, lists:seq(1, 60)).

burst(Round, Jobs) ->
    {ok, Ch} = py_channel:new(),
    Submitted = [begin
                     At = erlang:monotonic_time(millisecond),
                     Pending = py:spawn_call('__main__', consume, [Ch, self(), Index]),
                     {Index, At, Pending}
                 end || Index <- lists:seq(1, Jobs)],
    Deadline = erlang:monotonic_time(millisecond) + 2 * ?START_BOUND_MS,
    Started = collect_starts(Jobs, Deadline, #{}),
    ok = py_channel:close(Ch),
    Late = [{Index, late(At, maps:get(Index, Started, not_started))}
            || {Index, At, _} <- Submitted,
               late(At, maps:get(Index, Started, not_started)) =/= on_time],
    Late =:= [] orelse ?debugFmt("round ~p, burst of ~p: ~p late: ~p", [Round, Jobs, length(Late), Late]),
    ?assertEqual({round, Round, late, 0, 'of', Jobs}, {round, Round, late, length(Late), 'of', Jobs}),
    [?assertEqual({ok, 0}, py:await(Pending, 5000)) || {_, _, Pending} <- Submitted].

collect_starts(0, _Deadline, Started) ->
    Started;
collect_starts(Left, Deadline, Started) ->
    Wait = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {started, Index} ->
            collect_starts(Left - 1, Deadline,
                           Started#{Index => erlang:monotonic_time(millisecond)})
    after Wait ->
            Started
    end.

late(_Submitted, not_started) ->
    {not_started_after_ms, 2 * ?START_BOUND_MS};
late(Submitted, StartedAt) when StartedAt - Submitted =< ?START_BOUND_MS ->
    on_time;
late(Submitted, StartedAt) ->
    {started_after_ms, StartedAt - Submitted}.

%% Only the thread that started the interpreter had a thread state of its
%% own; on every other worker each job made one and deleted it, so what a
%% job left in `threading.local' was gone for the next job on that thread
%% (and `py:eval' beside a running job took ten times as long). Two consumers
%% hold two workers, and four callers at once keep several more threads busy.
thread_state_kept() ->
    ok = py:exec(?CONSUMER),
    {ok, Ch} = py_channel:new(),
    Consumers = [py:spawn_call('__main__', consume, [Ch, self(), Index]) || Index <- [1, 2]],
    [receive {started, Index} -> ok after 5000 -> error({consumer_not_started, Index}) end
     || Index <- [1, 2]],
    Parent = self(),
    Callers = [spawn_link(fun() ->
                                  ok = py:exec(?THREAD_MEMORY),
                                  Seen = [begin
                                              {ok, Pair} = py:call('__main__', remember, []),
                                              Pair
                                          end || _ <- lists:seq(1, 200)],
                                  Parent ! {self(), Seen}
                          end) || _ <- lists:seq(1, 4)],
    Seen = [receive {Caller, CallerSeen} -> CallerSeen after 30000 -> error(caller_hung) end
            || Caller <- Callers],
    ok = py_channel:close(Ch),
    [?assertEqual({ok, 0}, py:await(Consumer, 5000)) || Consumer <- Consumers],
    %% Each caller's namespace has its own `threading.local': a job finds
    %% nothing only on its first visit to a thread.
    Forgotten = lists:append([forgotten(CallerSeen) || CallerSeen <- Seen]),
    ?assertEqual([], Forgotten).

%% The jobs that found nothing on a thread an earlier job had been on.
forgotten(Seen) ->
    {Forgotten, _Visited} =
        lists:foldl(fun({Ident, Before}, {Forgotten, Visited}) ->
                            Expected = case sets:is_element(Ident, Visited) of
                                           true -> Ident;
                                           false -> none
                                       end,
                            {case Before of
                                 Expected -> Forgotten;
                                 _ -> [{thread, Ident, found, Before} | Forgotten]
                             end,
                             sets:add_element(Ident, Visited)}
                    end, {[], sets:new()}, Seen),
    Forgotten.

%% Six jobs on six threads each leave something in their thread's state; all
%% but two workers exit after 30 s without a job, and each that exits lets go
%% of what its state held. One of them may be the worker that started the
%% interpreter, whose (main) state is never deleted: three at least.
exited_thread_lets_go() ->
    ok = py:exec(?HELD_BY_THREAD),
    {ok, Ch} = py_channel:new(),
    Jobs = 6,
    Holders = [py:spawn_call('__main__', hold, [Ch, self(), Index])
               || Index <- lists:seq(1, Jobs)],
    [receive {started, Index} -> ok after 5000 -> error({holder_not_started, Index}) end
     || Index <- lists:seq(1, Jobs)],
    ok = py_channel:close(Ch),
    [?assertEqual({ok, 0}, py:await(Holder, 5000)) || Holder <- Holders],
    LetGo = collect_let_go(Jobs - 3, erlang:monotonic_time(millisecond) + 45000, []),
    ?assertMatch({let_go, N} when N >= Jobs - 3, {let_go, length(LetGo)}),
    ?assertEqual({ok, 4.0}, py:call(math, sqrt, [16])).

collect_let_go(Wanted, _Deadline, LetGo) when length(LetGo) >= Wanted ->
    LetGo;
collect_let_go(Wanted, Deadline, LetGo) ->
    Wait = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {let_go, Index} -> collect_let_go(Wanted, Deadline, [Index | LetGo])
    after Wait ->
            LetGo
    end.

%% With `+sbt db' each scheduler thread is bound to one core, and a thread
%% inherits its creator's binding: Python's threads, started by NIF calls on
%% schedulers, must still run on every core the VM may (its main thread's).
%% Four jobs at once, so that each starts a thread of its own. Linux only.
unbound_by_scheduler_binding() ->
    py_test_support:on_bound_peer(?MODULE, fun(Call, _Cores) ->
        Cores = Call(?MODULE, cores_of_jobs_at_once, [4]),
        MainThreadCores = <<"(lambda os: sorted(os.sched_getaffinity(os.getpid())))",
                            "(__import__('os'))">>,
        {ok, VmCores} = Call(py, eval, [MainThreadCores]),
        ?assertMatch([_, _ | _], VmCores),
        ?assertEqual([[VmCores, VmCores] || _ <- Cores], Cores)
    end).

%% Run on the peer: `Jobs' jobs running at once (each until the channel
%% closes), each answering its thread's cores and its `threading.Thread''s.
-spec cores_of_jobs_at_once(pos_integer()) -> [[[non_neg_integer()]]].
cores_of_jobs_at_once(Jobs) ->
    {ok, Ch} = py_channel:new(),
    Parent = self(),
    Callers = [spawn(fun() ->
                             ok = py:exec(?THREAD_CORES),
                             Parent ! {self(), py:call('__main__', thread_cores, [Ch, Parent])}
                     end)
               || _ <- lists:seq(1, Jobs)],
    [receive started -> ok after 10000 -> error(not_started) end || _ <- Callers],
    ok = py_channel:close(Ch),
    [receive {Caller, {ok, Cores}} -> Cores; {Caller, Other} -> error({Caller, Other})
     after 10000 -> error(no_answer)
     end || Caller <- Callers].

%% A worker bound to one core, and a thread that keeps that core busy without
%% the GIL (hashlib lets it go for large data), so the worker, watching the
%% pool's handoff once its job is over, is held up by the OS now and then.
-define(HELD_UP_WATCHER, <<"
import hashlib
import os
import threading

_busy = []

def bind(core):
    os.sched_setaffinity(0, {core})

def keep_busy(core):
    def spin():
        os.sched_setaffinity(0, {core})
        data = bytes(1 << 20)
        while _busy:
            hashlib.sha256(data).digest()
    _busy.append(True)
    threading.Thread(target=spin, daemon=True).start()

def stop_busy():
    _busy.clear()
">>).

look_on_held_up_watcher() ->
    py_test_support:on_bound_peer(?MODULE, fun(Call, [SchedulerOnesCore, Other | _]) ->
        %% The watcher on another core, held up there: its callers look on.
        Elsewhere = Call(?MODULE, looks_on_handed_jobs, [Other, true, 200]),
        ?assert(lists:member(held_up, Elsewhere)),
        %% The watcher on the caller's own core: it waits for the caller to give
        %% the core up, and is never taken for held up.
        Here = Call(?MODULE, looks_on_handed_jobs, [SchedulerOnesCore, false, 200]),
        ?assertNot(lists:member(held_up, Here)),
        ?assert(lists:member(not_taken, Here)),
        %% Callers killed as they look on, or sleep: the others get their own
        %% answers, nothing strays, and the pool has nothing left running.
        ?assertEqual({ok, 0, 0}, Call(?MODULE, killed_while_looking_on, [Other, 200]))
    end).

%% Run on the peer: a process on scheduler 1 calls Python `Tries' times; the
%% worker, bound to `Core' (kept busy by another thread if `Busy'), watches the
%% handoff between calls. Each call is submitted 20 us after the last answer,
%% and its caller asks `py_look_on/1' what to do 5 us later, as `py_answer'
%% does: the answers, in order. Every call must get its own answer.
-spec looks_on_handed_jobs(non_neg_integer(), boolean(), pos_integer()) ->
          [taken | held_up | not_taken].
looks_on_handed_jobs(Core, Busy, Tries) ->
    Self = self(),
    {Looker, Monitor} =
        spawn_opt(fun() ->
                          ok = py:exec(?HELD_UP_WATCHER),
                          {ok, none} = py:call('__main__', bind, [Core]),
                          [{ok, none} = py:call('__main__', keep_busy, [Core]) || Busy],
                          Namespace = py_channel_nif:py_namespace_new(),
                          Looks = [look_on_once(Namespace, N) || N <- lists:seq(1, Tries)],
                          {ok, none} = py:call('__main__', stop_busy, []),
                          Self ! {self(), Looks}
                  end, [monitor, {scheduler, 1}]), % (undocumented: runs it on scheduler 1 only)
    receive
        {Looker, Looks} -> erlang:demonitor(Monitor, [flush]), Looks;
        {'DOWN', Monitor, process, Looker, Reason} -> error({looker_failed, Reason})
    end.

look_on_once(Namespace, N) ->
    busy_wait(erlang:monotonic_time(microsecond) + 20),
    Ref = make_ref(),
    Handle = py_channel_nif:py_call(Ref, Namespace, group_leader(), operator, mul, [N, N],
                                    #{}, look),
    %% Asked when py_answer asks: a job no worker has begun 5 us after its submit.
    busy_wait(erlang:monotonic_time(microsecond) + 5),
    Looked = py_channel_nif:py_look_on(Handle),
    Answer = case py_answer:look({job, Handle}, 5000) of
                 {message, {py_response, Result}} -> Result;
                 {message, {py_response, Ref, Result}} -> Result;
                 'receive' -> receive {py_response, Ref, Result} -> Result after 5000 -> timeout end
             end,
    ?assertEqual({ok, N * N}, Answer),
    Looked.

%% Run on the peer: the worker bound to `Core' and kept busy there; two
%% callers make `Calls' calls each while `Calls' more are killed 0-150 us
%% into theirs. Answers `{ok, Stray, Running}': the messages left in the two
%% callers' mailboxes, and the pool's running jobs once it settles.
-spec killed_while_looking_on(non_neg_integer(), pos_integer()) ->
          {ok, non_neg_integer(), non_neg_integer()}.
killed_while_looking_on(Core, Calls) ->
    Self = self(),
    Caller = fun() ->
                     ok = py:exec(?HELD_UP_WATCHER),
                     [begin
                          ?assertEqual({ok, N * N}, py:call(operator, mul, [N, N]))
                      end || N <- lists:seq(1, Calls)],
                     receive after 100 -> ok end,
                     {message_queue_len, Stray} = process_info(self(), message_queue_len),
                     Self ! {self(), Stray}
             end,
    {Setup, SetupMonitor} =
        spawn_opt(fun() ->
                          ok = py:exec(?HELD_UP_WATCHER),
                          {ok, none} = py:call('__main__', bind, [Core]),
                          {ok, none} = py:call('__main__', keep_busy, [Core]),
                          Self ! {self(), ready},
                          %% The busy thread stops with this namespace's call.
                          receive stop -> {ok, none} = py:call('__main__', stop_busy, []) end
                  end, [monitor, {scheduler, 1}]),
    receive {Setup, ready} -> ok end,
    Callers = [spawn_opt(Caller, [{scheduler, 1}]) || _ <- [1, 2]],
    [begin
         Victim = spawn_opt(fun() -> py:call(operator, mul, [N, N]) end, [{scheduler, 1}]),
         busy_wait(erlang:monotonic_time(microsecond) + N rem 150),
         exit(Victim, kill)
     end || N <- lists:seq(1, Calls)],
    Stray = lists:sum([receive {C, Left} -> Left after 30000 -> error(caller_stuck) end
                       || C <- Callers]),
    Setup ! stop,
    receive {'DOWN', SetupMonitor, process, Setup, normal} -> ok end,
    py_test_support:wait_until(fun() ->
                                       {_, Running, Queued} = py_channel_nif:py_pool_counts(),
                                       Running + Queued =:= 0
                               end),
    {_, Running, _} = py_channel_nif:py_pool_counts(),
    {ok, Stray, Running}.

busy_wait(Until) ->
    erlang:monotonic_time(microsecond) < Until andalso busy_wait(Until).

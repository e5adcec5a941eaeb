%% EUnit suite for the worker threads Python runs on: every job starts at
%% once, whatever the workers were doing when it came.
-module(py_pool_tests).

-include_lib("eunit/include/eunit.hrl").

%% A channel consumer: it says when it started, then keeps its worker busy
%% until the channel is closed.
-define(CONSUMER, <<"
import erlang
from erlang.channel import Channel

def consume(ref, pid, index):
    erlang.send(pid, (erlang.Atom('started'), index))
    return sum(1 for _ in Channel(ref))
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
                      fun bursts_start_at_once/0}}]}.

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

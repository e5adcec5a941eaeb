%% EUnit suite: the node's OS resident size comes back after many channels
%% are made and dropped, driving the real NIF.
%%
%% `erlang:memory()' is not enough: native memory the NIF takes from malloc
%% does not show in it, and memory that is freed but kept by an allocator
%% shows in neither it nor `live_channels'. Only the resident size (VmRSS)
%% tells whether a node that makes a channel per request keeps growing.
-module(py_memory_tests).

-include_lib("eunit/include/eunit.hrl").

-import(py_test_support, [wait_until/1]).

-define(CHANNELS, 100000).
%% Channels are made by this many processes, as request handlers would, so
%% that no process heap holding them grows large.
-define(MAKERS, 100).

%% What the node may keep resident above its baseline once every channel is
%% gone. The BEAM keeps a few freed carriers cached for a while (tens of MB
%% after 100,000 channels, handed back within about 10 s); channel blocks
%% that malloc kept left 270-420 MB resident for good.
-define(MARGIN_MB, 64).
%% How long the resident size may take to come back within the margin.
-define(SETTLE_MS, 20000).

%% The baseline is taken once, before any of these channels exist: the node
%% must come back to where it started, not merely stop growing.
setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    erlang:garbage_collect(),
    py_test_support:rss_mb().

py_memory_test_() ->
    {setup, fun setup/0,
     fun(Baseline) ->
             [{timeout, 60,
               {"100,000 channels made and dropped: resident size returns to baseline",
                fun() -> made_and_dropped(Baseline) end}},
              {timeout, 60,
               {"100,000 channels each sent a term and read, all alive at once, then "
                "dropped: resident size returns to baseline",
                fun() -> used_and_dropped(Baseline) end}},
              {timeout, 60,
               {"a channel per request (make, send, receive, drop) 100,000 times: "
                "resident size returns to baseline",
                fun() -> channel_per_request(Baseline) end}}]
     end}.

made_and_dropped(Baseline) ->
    returns_to(Baseline, fun() -> hold_all(fun(_Ch) -> ok end) end).

used_and_dropped(Baseline) ->
    returns_to(Baseline, fun() -> hold_all(fun request/1) end).

channel_per_request(Baseline) ->
    returns_to(
      Baseline,
      fun() ->
              in_makers(fun() ->
                                [begin {ok, Ch} = py_channel:new(), request(Ch) end
                                 || _ <- lists:seq(1, ?CHANNELS div ?MAKERS)],
                                ok
                        end)
      end).

request(Ch) ->
    ok = py_channel:send(Ch, {request, self(), <<"data">>}),
    {ok, {request, _, <<"data">>}} = py_channel:try_receive(Ch),
    ok.

%% Makes ?CHANNELS channels, applies `Use' to each, and drops them only once
%% all of them exist.
hold_all(Use) ->
    Parent = self(),
    Go = make_ref(),
    in_makers(fun() ->
                      Chs = [begin {ok, Ch} = py_channel:new(), Use(Ch), Ch end
                             || _ <- lists:seq(1, ?CHANNELS div ?MAKERS)],
                      Parent ! {made, self()},
                      receive Go -> length(Chs) end
              end,
              fun(Makers) ->
                      [receive {made, Maker} -> ok end || Maker <- Makers],
                      ?assert(live_channels() >= ?CHANNELS),
                      [Maker ! Go || Maker <- Makers]
              end).

in_makers(Make) ->
    in_makers(Make, fun(_) -> ok end).

%% Runs `Make' in ?MAKERS processes, lets `Meanwhile' see them, and waits
%% for them to finish.
in_makers(Make, Meanwhile) ->
    Makers = [spawn_monitor(Make) || _ <- lists:seq(1, ?MAKERS)],
    Meanwhile([Pid || {Pid, _} <- Makers]),
    [receive {'DOWN', Ref, process, Pid, Why} -> ?assertEqual(normal, Why) end
     || {Pid, Ref} <- Makers],
    ok.

returns_to(Baseline, Run) ->
    Live = live_channels(),
    Run(),
    [erlang:garbage_collect(Pid) || Pid <- processes()],
    wait_until(fun() -> live_channels() =< Live end),
    Deadline = erlang:monotonic_time(millisecond) + ?SETTLE_MS,
    After = settle(Baseline + ?MARGIN_MB, Deadline),
    ?assertEqual(back, back_to_baseline(Baseline, After)).

back_to_baseline(Baseline, After) when After =< Baseline + ?MARGIN_MB ->
    back;
back_to_baseline(Baseline, After) ->
    {resident_mb, #{baseline => Baseline, 'after' => After, margin => ?MARGIN_MB}}.

%% The resident size once it is at most `Bound', or at the deadline.
settle(Bound, Deadline) ->
    Rss = py_test_support:rss_mb(),
    case Rss =< Bound orelse erlang:monotonic_time(millisecond) >= Deadline of
        true -> Rss;
        false -> timer:sleep(100), settle(Bound, Deadline)
    end.

live_channels() ->
    maps:get(live_channels, py_channel:stats()).

%% `make demo-cluster': Python work spread over nodes. Two nodes are started
%% with OTP's `peer' on this machine, each with its own embedded Python. On
%% each, a service process makes a channel, runs two Python workers on it and
%% joins the `pg' group `py_workers'. This node finds the services through
%% `pg', asks each for its channel, and sends jobs to the channels round-robin
%% from here: the channel handles work on this node as on their own. The Python
%% workers reply to a collector here; the run ends with the jobs each node did
%% and a check that every job was answered exactly once.
-module(py_channel_cluster_demo).

-export([main/0, main/1]).
-export([start_service/0]).

-define(DEFAULT_JOBS, 20000).
-define(NODES, 2).
-define(GROUP, py_workers).

%% The Python worker: squares the number of a job, and says which node did it.
-define(WORKER, <<"
import os
from erlang.channel import Channel, reply

def worker(ref, node):
    done = 0
    for job, n, reply_to in Channel(ref):
        reply(reply_to, (job, n * n, node))
        done += 1
    return done
">>).

main() ->
    main(?DEFAULT_JOBS).

main(Jobs) ->
    _ = os:cmd("epmd -daemon"),
    {ok, _} = net_kernel:start([list_to_atom("py_demo_" ++ os:getpid()), shortnames]),
    {ok, _} = pg:start_link(),
    Paths = [filename:dirname(code:which(M)) || M <- [py_channel, ?MODULE]],
    Peers = [begin
                 {ok, Peer, Node} = peer:start_link(
                                      #{name => peer:random_name(py_demo),
                                        %% Joined to this node only, not to each other.
                                        args => ["-connect_all", "false"
                                                 | lists:append([["-pa", P] || P <- Paths])]}),
                 ok = erpc:call(Node, ?MODULE, start_service, []),
                 {Peer, Node}
             end || _ <- lists:seq(1, ?NODES)],
    Services = wait_for_members(?NODES),
    %% A channel per Python node, asked of its service once.
    Channels = [begin
                    Service ! {channel, self()},
                    receive {channel, Service, Channel} -> Channel end
                end || Service <- Services],
    io:format("py_channel cluster demo: ~b jobs from ~p to ~b Python nodes:~n",
              [Jobs, node(), length(Channels)]),
    [io:format("  channel ~p on ~p~n", [Ch, node(Ch)]) || Ch <- Channels],
    T0 = erlang:monotonic_time(millisecond),
    Collector = self(),
    send_jobs(Channels, Channels, 1, Jobs, Collector),
    Answers = collect(Jobs, #{}),
    Ms = max(1, erlang:monotonic_time(millisecond) - T0),
    [ok = py_channel:close(Ch) || Ch <- Channels],
    Done = [{Node, erpc:call(Node, erlang, apply, [fun service_result/0, []])}
            || {_, Node} <- Peers],
    ByNode = maps:fold(fun(_, {_, Node}, Acc) -> maps:update_with(Node, fun(N) -> N + 1 end,
                                                                  1, Acc) end,
                       #{}, Answers),
    [io:format("  ~p answered ~b jobs (its workers: ~p)~n",
               [Node, maps:get(Node, ByNode, 0), Workers]) || {Node, Workers} <- Done],
    Correct = map_size(Answers) =:= Jobs andalso
        lists:all(fun({Job, {Square, _}}) -> Square =:= Job * Job end, maps:to_list(Answers)),
    io:format("~b jobs in ~b ms (~b jobs/s); every job answered exactly once: ~p~n",
              [Jobs, Ms, Jobs * 1000 div Ms, Correct]),
    [peer:stop(Peer) || {Peer, _} <- Peers],
    Correct orelse halt(1),
    ok.

send_jobs(_, _, Job, Jobs, _) when Job > Jobs -> ok;
send_jobs([], All, Job, Jobs, Collector) -> send_jobs(All, All, Job, Jobs, Collector);
send_jobs([Ch | Rest], All, Job, Jobs, Collector) ->
    ok = py_channel:send(Ch, {Job, Job, Collector}, infinity),
    send_jobs(Rest, All, Job + 1, Jobs, Collector).

collect(0, Answers) -> Answers;
collect(Left, Answers) ->
    receive
        {Job, Square, Node} when is_integer(Job) ->
            maps:is_key(Job, Answers) andalso error({answered_twice, Job}),
            collect(Left - 1, Answers#{Job => {Square, Node}})
    after 60000 -> error({jobs_unanswered, Left})
    end.

wait_for_members(N) ->
    case pg:get_members(?GROUP) of
        Members when length(Members) >= N -> Members;
        _ -> timer:sleep(20), wait_for_members(N)
    end.

%% On a Python node: the service that owns the channel, runs the workers and
%% is found through pg.
start_service() ->
    {ok, _} = application:ensure_all_started(py_channel),
    Self = self(),
    spawn(fun() ->
                  {ok, _} = pg:start(pg),
                  {ok, Channel} = py_channel:new(#{max_size => 256 * 1024}),
                  ok = py:exec(?WORKER),
                  Workers = [py:spawn_call('__main__', worker, [Channel, node()])
                             || _ <- [1, 2]],
                  ok = pg:join(?GROUP, self()),
                  register(py_demo_service, self()),
                  Self ! ready,
                  serve(Channel, Workers)
          end),
    receive ready -> ok end.

serve(Channel, Workers) ->
    receive
        {channel, From} ->
            From ! {channel, self(), Channel},
            serve(Channel, Workers);
        {result, From} ->
            From ! {result, [begin {ok, N} = py:await(W, 60000), N end || W <- Workers]}
    end.

service_result() ->
    py_demo_service ! {result, self()},
    receive {result, Done} -> Done end.

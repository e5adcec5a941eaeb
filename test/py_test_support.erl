%% Helpers shared by the EUnit suites.
-module(py_test_support).

-include_lib("eunit/include/eunit.hrl").

-export([send_retrying/2, recv_all/1, wait_until/1, wait_until/2, uvloop_available/0,
         importable/1, rss_mb/0, binary_heap/0, on_bound_peer/2]).

%% Sends, retrying while the channel answers busy.
-spec send_retrying(py_channel:channel(), term()) -> ok.
send_retrying(Ch, Term) ->
    case py_channel:send(Ch, Term) of
        ok -> ok;
        busy -> erlang:yield(), send_retrying(Ch, Term)
    end.

%% Every term until the channel is closed and drained, in order; fails if a
%% term takes over 30 s to come.
-spec recv_all(py_channel:channel()) -> [term()].
recv_all(Ch) ->
    case py_channel:recv(Ch, 30000) of
        {ok, T} -> [T | recv_all(Ch)];
        {error, closed} -> []
    end.

%% Polls `Condition' every 10 ms for up to 5 s.
-spec wait_until(fun(() -> boolean())) -> ok.
wait_until(Condition) ->
    wait_until(Condition, 500).

%% Polls `Condition' every 10 ms, `Tries' times at most.
-spec wait_until(fun(() -> boolean()), non_neg_integer()) -> ok.
wait_until(Condition, 0) ->
    ?assert(Condition());
wait_until(Condition, Tries) ->
    case Condition() of
        true -> ok;
        false -> timer:sleep(10), wait_until(Condition, Tries - 1)
    end.

%% uvloop is not in the standard library: it is used when the embedded Python
%% can import it, or from the virtualenv `_build/test-venv/<major.minor>' (under
%% the directory the tests run from) that `make test' prepares; the tests never
%% install anything. `{false, Venv}' when neither has it.
-spec uvloop_available() -> true | {false, string()}.
uvloop_available() ->
    importable(uvloop).

%% Whether the embedded Python can import `Module', from its own packages or the
%% test virtualenv (see `uvloop_available/0'), which is activated for it.
-spec importable(atom()) -> true | {false, string()}.
importable(Module) ->
    {ok, _} = application:ensure_all_started(py_channel),
    {ok, Version} = py:eval(<<"'%d.%d' % __import__('sys').version_info[:2]">>),
    Venv = filename:absname(filename:join(["_build", "test-venv", binary_to_list(Version)])),
    Name = atom_to_binary(Module),
    Importable = fun() -> py:eval(<<"__import__(m).__name__">>, #{m => Name}) =:= {ok, Name} end,
    case Importable() orelse
        (filelib:is_dir(Venv) andalso py:activate_venv(Venv) =:= ok andalso Importable()) of
        true -> true;
        false -> {false, Venv}
    end.

%% The VM's resident memory (VmRSS), in MB: memory the BEAM's allocators and
%% Python's both count in.
-spec rss_mb() -> non_neg_integer().
rss_mb() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Status, "VmRSS:\\s+(\\d+) kB", [{capture, all_but_first, binary}]),
    binary_to_integer(Kb) div 1024.

%% The words of binaries and resources the calling process refers to (its virtual binary
%% heap), and the garbage collections it has had: a resource made per call shows in the
%% first as long as the second stays the same.
-spec binary_heap() -> {non_neg_integer(), non_neg_integer()}.
binary_heap() ->
    {garbage_collection, Collections} = process_info(self(), garbage_collection),
    {garbage_collection_info, Info} = process_info(self(), garbage_collection_info),
    {proplists:get_value(bin_vheap_size, Info), proplists:get_value(minor_gcs, Collections)}.

%% Runs `Test(Call, Cores)' against a peer node whose schedulers are bound to
%% cores (`+sbt db'), py_channel started there: `Call(M, F, A)' calls a
%% function on the peer, `Cores' are the schedulers' cores, scheduler 1's
%% first. The peer has the code paths of py_channel, this module and `Module'.
%% Skipped, saying why, off Linux (no thread affinity to read or set) and
%% where binding gives fewer than two cores (it needs the CPU topology).
-spec on_bound_peer(module(), fun((fun((module(), atom(), list()) -> term()),
                                   [non_neg_integer()]) -> term())) -> ok.
on_bound_peer(Module, Test) ->
    case os:type() of
        {unix, linux} -> on_bound_peer_on_linux(Module, Test);
        Other -> ?debugFmt("skipped on ~p: no thread affinity", [Other])
    end.

on_bound_peer_on_linux(Module, Test) ->
    Paths = lists:usort([filename:dirname(code:which(M)) || M <- [py_channel, ?MODULE, Module]]),
    Args = ["+sbt", "db" | lists:append([["-pa", P] || P <- Paths])],
    {ok, Peer, _} = peer:start_link(#{connection => standard_io, args => Args}),
    Call = fun(M, F, A) -> peer:call(Peer, M, F, A, 30000) end,
    try
        case tuple_to_list(Call(erlang, system_info, [scheduler_bindings])) of
            [First, Second | _] = Cores when is_integer(First), is_integer(Second) ->
                {ok, _} = Call(application, ensure_all_started, [py_channel]),
                Test(Call, Cores),
                ok;
            Bound ->
                ?debugFmt("skipped: the schedulers could not be bound to two cores (~p)",
                          [Bound])
        end
    after
        peer:stop(Peer)
    end.

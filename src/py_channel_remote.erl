%% @private
%% @doc A channel used from another node than the one it was made on (the
%% owner, `node(Channel)'): a `py_channel' call other than `send/2' (which
%% `py_channel_link' pipelines) is made on the owner node, by a process of its
%% own there, and answered as if it were local. docs/cluster.md.
%%
%% A channel handle is a NIF resource; sent to another node it arrives as a
%% reference that still names its owner node, and coming back home it is the
%% live channel again. So the call goes home with it (`erpc'). If the owner
%% node is not connected, or the connection drops before the answer, the
%% answer is `{error, noconnection}': a send so answered may or may not have
%% been queued; one answered `ok' was.
%%
%% A call that waits (`recv/2', `send/3') waits on the owner node, in a process
%% that a watcher there kills if the caller goes away: nothing keeps waiting,
%% or takes a term, for a caller that is gone.
-module(py_channel_remote).

-export([call/3, run/3]).

%% @doc Makes `py_channel:Function(Args)' on the node that owns `Channel' (the
%% first of `Args').
-spec call(py_channel:channel(), atom(), [term()]) -> term().
call(Channel, Function, Args) ->
    try
        erpc:call(node(Channel), ?MODULE, run, [self(), Function, Args], infinity)
    catch
        error:{erpc, noconnection} -> {error, noconnection};
        error:{exception, Reason, Stack} -> erlang:raise(error, Reason, Stack);
        exit:{exception, Reason} -> exit(Reason)
    end.

%% @doc On the owner node: the call, watched so that the caller's exit (or the
%% loss of its node) ends it.
-spec run(pid(), atom(), [term()]) -> term().
run(Caller, Function, Args) ->
    Self = self(),
    Watcher = spawn(fun() -> watch(Caller, Self) end),
    try
        apply(py_channel, Function, Args)
    after
        Watcher ! done
    end.

watch(Caller, Call) ->
    CallerMonitor = erlang:monitor(process, Caller),
    CallMonitor = erlang:monitor(process, Call),
    receive
        {'DOWN', CallerMonitor, process, _, _} -> exit(Call, kill);
        {'DOWN', CallMonitor, process, _, _} -> ok;
        done -> ok
    end.

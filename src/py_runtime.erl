%% @private
%% @doc The process Python threads talk to: it runs the Erlang functions that
%% Python calls with `erlang.call(Name, *Args)' (each in a process of its own,
%% so a function may itself call Python), keeps the registry of those
%% functions, logs Python tracebacks through `logger', forwards what Python
%% sends to processes on other nodes, and relays Python's output to group
%% leaders on other nodes.
-module(py_runtime).
-behaviour(gen_server).

-export([start_link/0, register_function/2, unregister_function/1, lookup/1, output/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(TABLE, py_runtime_functions).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

-spec register_function(atom() | binary(), function()) -> ok.
register_function(Name, Fun) ->
    gen_server:call(?MODULE, {register, key(Name), Fun}).

-spec unregister_function(atom() | binary()) -> ok.
unregister_function(Name) ->
    gen_server:call(?MODULE, {unregister, key(Name)}).

-spec lookup(atom() | binary()) -> {ok, function()} | error.
lookup(Name) ->
    case ets:lookup(?TABLE, key(Name)) of
        [{_, Fun}] -> {ok, Fun};
        [] -> error
    end.

%% @doc Where Python code run for a process with `GroupLeader' writes its
%% output: that group leader, or, for one on another node (the process runs a
%% call made with rpc or erpc from there), a local process relaying to it (the
%% NIF API sends only to local processes). Without this process running, the
%% local `user'.
-spec output(pid()) -> pid().
output(GroupLeader) when node(GroupLeader) =:= node() ->
    GroupLeader;
output(GroupLeader) ->
    case whereis(?MODULE) of
        undefined -> whereis(user);
        _ -> gen_server:call(?MODULE, {relay, GroupLeader})
    end.

%% Names are kept as binaries: Python sends strings, and a name from Python
%% must never create an atom.
key(Name) when is_atom(Name) -> atom_to_binary(Name, utf8);
key(Name) when is_binary(Name) -> Name.

init([]) ->
    ?TABLE = ets:new(?TABLE, [named_table, protected, {read_concurrency, true}]),
    ok = py_channel_nif:py_set_runtime(self()),
    %% What Python's None becomes: none (the default), or nil for Elixir code.
    ok = py_channel_nif:py_set_none_atom(application:get_env(py_channel, python_none, none)),
    case application:get_env(py_channel, start_python, false) of
        true -> py_channel_nif:py_start(make_ref());
        false -> ok
    end,
    {ok, #{}}.

handle_call({register, Name, Fun}, _From, Running) ->
    true = ets:insert(?TABLE, {Name, Fun}),
    {reply, ok, Running};
handle_call({relay, GroupLeader}, _From, Running) ->
    case Running of
        #{{relay, GroupLeader} := Relay} ->
            {reply, Relay, Running};
        #{} ->
            {Relay, Monitor} = spawn_monitor(fun() -> relay(GroupLeader) end),
            {reply, Relay, Running#{{relay, GroupLeader} => Relay, Monitor => {relay, GroupLeader}}}
    end;
handle_call({unregister, Name}, _From, Running) ->
    true = ets:delete(?TABLE, Name),
    {reply, ok, Running}.

handle_cast(_Request, Running) ->
    {noreply, Running}.

handle_info({py_callback, Handle, Name, Args}, Running) when is_list(Args) ->
    {_Pid, Monitor} = spawn_monitor(fun() -> run_callback(Handle, Name, Args) end),
    {noreply, Running#{Monitor => Handle}};
handle_info({'DOWN', Monitor, process, _Pid, Reason}, Running) ->
    case maps:take(Monitor, Running) of
        {{relay, _} = Relay, Rest} ->
            {noreply, maps:remove(Relay, Rest)};
        {Handle, Rest} ->
            Reason =:= normal orelse
                py_channel_nif:py_callback_reply(Handle, {error, {exit, Reason}}),
            {noreply, Rest};
        error ->
            {noreply, Running}
    end;
handle_info({py_logging, Level, Name, Message}, Running) ->
    %% A record of Python's `logging' (erlang._logging).
    logger:log(Level, "~ts", [Message], #{domain => [py_channel, python], python_logger => Name}),
    {noreply, Running};
handle_info({py_log, Level, Traceback}, Running) ->
    logger:log(Level, "Python exception:~n~ts", [Traceback], #{domain => [py_channel]}),
    {noreply, Running};
handle_info({py_forward, Pid, Message}, Running) ->
    %% Python's send to a process on another node (the NIF API sends only to
    %% local ones).
    Pid ! Message,
    {noreply, Running};
handle_info({py_response, _Ref, _Result}, Running) ->
    %% The answer to a start request made at application start.
    {noreply, Running};
handle_info(_Other, Running) ->
    {noreply, Running}.

%% Passes everything on to a group leader on another node, while it lives.
relay(GroupLeader) ->
    Monitor = erlang:monitor(process, GroupLeader),
    relay(GroupLeader, Monitor).

relay(GroupLeader, Monitor) ->
    receive
        {'DOWN', Monitor, process, _, _} -> ok;
        Message -> GroupLeader ! Message, relay(GroupLeader, Monitor)
    end.

run_callback(Handle, Name, Args) ->
    %% As erlang_python: a function of arity 1 gets the argument list.
    Result = case lookup(Name) of
                 {ok, Fun} when is_function(Fun, 1) ->
                     try {ok, Fun(Args)}
                     catch Class:Reason -> {error, {Class, Reason}}
                     end;
                 {ok, Fun} when is_function(Fun, length(Args)) ->
                     try {ok, apply(Fun, Args)}
                     catch Class:Reason -> {error, {Class, Reason}}
                     end;
                 {ok, _} ->
                     {error, {badarity, Name}};
                 error ->
                     {error, {undefined_function, Name}}
             end,
    py_channel_nif:py_callback_reply(Handle, Result).

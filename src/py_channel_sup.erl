%% @private
%% @doc Top supervisor of the `py_channel' application. Channels need no
%% process of their own; `py_runtime' serves the embedded interpreter.
-module(py_channel_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Runtime = #{id => py_runtime, start => {py_runtime, start_link, []}},
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10}, [Runtime]}}.

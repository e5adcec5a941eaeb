%% @private
%% @doc The `py_channel' OTP application.
-module(py_channel_app).
-behaviour(application).

-export([start/2, stop/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    py_channel_sup:start_link().

-spec stop(term()) -> ok.
stop(_State) ->
    ok.

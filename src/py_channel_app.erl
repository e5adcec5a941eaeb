%% @private
%% @doc The `py_channel' OTP application.
-module(py_channel_app).
-behaviour(application).

-export([start/2, stop/1, format_error/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    %% The NIF for the configured Python is loaded here, so a Python that is
    %% missing or unusable is an error of this start, not a node that fails to boot.
    case start_settings() of
        ok ->
            py_channel_sup:start_link();
        {error, Reason} ->
            logger:error("~ts", [format_error(Reason)]),
            {error, Reason}
    end.

start_settings() ->
    case py_loader:load() of
        ok -> py_answer:init_await_spin();
        Error -> Error
    end.

-spec stop(term()) -> ok.
stop(_State) ->
    ok.

%% @doc A sentence for the reason a start failed (see `py_loader').
-spec format_error(term()) -> unicode:chardata().
format_error({badarg, {await_spin, Value}}) ->
    io_lib:format("py_channel: await_spin must be a number of microseconds, 0 or more, not ~tp",
                  [Value]);
format_error(Reason) ->
    py_loader:format_error(Reason).

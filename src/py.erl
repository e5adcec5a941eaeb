%% @doc Running Python in the embedded interpreter.
%%
%% ```
%% {ok, 4.0} = py:call(math, sqrt, [16]),
%% {ok, 42} = py:eval(<<"21 * 2">>),
%% {ok, 100} = py:eval(<<"x * y">>, #{x => 10, y => 10}),
%% ok = py:exec(<<"def double(x):\n    return 2 * x\n">>),
%% {ok, 8} = py:call('__main__', double, [4]),
%% {error, {'ZeroDivisionError', _}} = py:eval(<<"1/0">>).
%% '''
%%
%% Python runs on threads the NIF owns; a call queues a job and the caller
%% waits in an ordinary `receive', so no scheduler ever waits for Python.
%% Every job starts at once, on an idle thread or a new one: a long-running
%% call (a loop over a channel) never holds up a short one.
%%
%% Code run with `exec' and `eval' sees a namespace of the calling process
%% (one per context), so functions it defines are there for later calls
%% (`py:call('__main__', Name, Args)'); it is freed when the process exits.
%% Every namespace starts with `Channel', `ChannelClosed' and `reply' of
%% `erlang.channel', so the same Python source runs from Erlang, Elixir and
%% Gleam without importing them.
%%
%% A call that does not give a result gives one of three errors (the type
%% `py_error()'; docs/channel.md has the outcome table of every layer):
%% <ul>
%% <li>`{error, {ExceptionName, Message}}': the Python code raised. The
%% formatted traceback is logged through `logger' (debug level when the
%% caller gets the error, error level when nobody does). `ExceptionName' is
%% an atom for every built-in exception and for any name an Erlang module
%% mentions (the atom exists), else a binary: exception classes made at run
%% time do not fill the atom table.</li>
%% <li>`{error, timeout}': no answer within the timeout. The Python code is
%% cancelled (see `cancel/1') and its answer discarded: it never reaches the
%% mailbox later.</li>
%% <li>`{error, cancelled}': `cancel/1' stopped the call.</li>
%% <li>`{error, {python_not_started, Reason}}': the interpreter could not be
%% started (`Reason' is a binary saying why); no Python code ran.</li>
%% </ul>
%%
%% Every timeout is `infinity' or 0 to 4294967295 ms; any other value is a
%% `badarg' error raised before the job is submitted.
%%
%% Stopping Python: a call is cancelled by `cancel/1', by its timeout, and by
%% the exit of the process waiting for it. Its Python code gets
%% `erlang.Cancelled' (a `BaseException', so `except Exception' does not
%% swallow it; `try'/`finally' cleans up) at its next bytecode boundary, and a
%% wait it is blocked in (a channel receive, `erlang.call') wakes at once and
%% raises it. A C call that does not return (`time.sleep', a numpy kernel) is
%% stopped when it returns.
%%
%% The names and result shapes follow erlang_python's `py' for this subset.
-module(py).

-export([exec/1, exec/2, exec/3, eval/1, eval/2, eval/3,
         call/3, call/4, call/5, cast/3, cast/4,
         spawn_call/3, spawn_call/4, spawn_call/5, await/1, await/2, cancel/1,
         context/0, context/1, start_contexts/0, start_contexts/1,
         register_function/2, register_function/3, unregister_function/1,
         version/0, info/0, add_path/1, activate_venv/1, last_traceback/0, start_link/3, start_link/4,
         stream/3, stream/4]).
-export([init_linked/6, timed_call/3, timed_eval/1]).

-export_type([context/0, pending/0, py_error/0, python_exception/0, exec_options/0,
              start_options/0, stream_options/0]).

-record(py_context, {id :: non_neg_integer()}).
-record(py_pending, {ref :: reference(), handle :: reference()}).

-opaque context() :: #py_context{}.
%% A context: its own namespace in every process that uses it.
-opaque pending() :: #py_pending{}.
%% A call started with `spawn_call', to be collected with `await'.
-type py_error() :: {error, python_exception()}
                  | {error, timeout}
                  | {error, cancelled}
                  | {error, {python_not_started, Reason :: binary()}}.
%% Why a call gave no result: the Python code raised, no answer came in
%% time (the code was stopped), it was cancelled, or the interpreter could
%% not be started (no Python code ran).
-type exec_options() :: #{timeout => timeout()}.
%% Options of `exec/2,3'.
-type start_options() :: #{kwargs => map(), context => context()}.
%% Options of `start_link/4'.
-type stream_options() :: #{kwargs => map(), context => context(),
                            max_size => non_neg_integer()}.
%% Options of `stream/4'.
-type python_exception() :: {Name :: atom() | binary(), Message :: binary()}.
%% A Python exception: its class name (an atom when that atom exists, else a
%% binary) and `str()' of the exception.

-define(DEFAULT_TIMEOUT, 30000).
-define(LAST_TRACEBACK, {?MODULE, last_traceback}).
-define(DEFAULT_CONTEXTS, 4).
-define(DEFAULT_STREAM_MAX_SIZE, 65536).

%% @doc Runs Python statements in the caller's namespace.
-spec exec(iodata()) -> ok | py_error().
exec(Code) ->
    exec(context(), Code).

%% @doc `exec(Context, Code)' runs Python statements in the caller's namespace
%% of `Context'; `exec(Code, Options)' in the default context, with
%% `#{timeout => Timeout}' (30 s by default; the timeout stops the code).
-spec exec(context() | iodata(), iodata() | exec_options()) -> ok | py_error().
exec(#py_context{} = Context, Code) ->
    exec(Context, Code, #{});
exec(Code, Options) when is_map(Options) ->
    exec(context(), Code, Options).

%% @doc Runs Python statements in the caller's namespace of `Context', with
%% `#{timeout => Timeout}'.
-spec exec(context(), iodata(), exec_options()) -> ok | py_error().
exec(#py_context{} = Context, Code, Options) when is_map(Options) ->
    Timeout = exec_timeout(Options),
    wait(fun(Ref) -> py_channel_nif:py_exec(Ref, namespace(Context), output(), source(Code)) end,
         Timeout).

exec_timeout(Options) ->
    case maps:to_list(Options) of
        [] -> ?DEFAULT_TIMEOUT;
        [{timeout, Timeout}] -> check_timeout(Timeout), Timeout;
        _ -> error(badarg, [Options])
    end.

%% @doc Evaluates a Python expression.
-spec eval(iodata()) -> {ok, term()} | py_error().
eval(Code) ->
    eval(context(), Code, #{}).

%% @doc `eval(Code, Locals)' evaluates with local variables
%% (`#{Name => Term}', names as atoms or binaries); `eval(Context, Code)' in
%% the namespace of `Context'.
-spec eval(iodata() | context(), map() | iodata()) -> {ok, term()} | py_error().
eval(#py_context{} = Context, Code) ->
    eval(Context, Code, #{});
eval(Code, Locals) when is_map(Locals) ->
    eval(context(), Code, Locals).

%% @doc `eval(Context, Code, Locals)', or `eval(Code, Locals, Timeout)'.
-spec eval(context() | iodata(), iodata() | map(), map() | timeout()) ->
          {ok, term()} | py_error().
eval(#py_context{} = Context, Code, Locals) when is_map(Locals) ->
    eval(Context, Code, Locals, ?DEFAULT_TIMEOUT);
eval(Code, Locals, Timeout) when is_map(Locals) ->
    eval(context(), Code, Locals, Timeout).

eval(Context, Code, Locals, Timeout) ->
    check_timeout(Timeout),
    wait(fun(Ref) ->
                 py_channel_nif:py_eval(Ref, namespace(Context), output(), source(Code), Locals,
                                        look)
         end, Timeout).

%% @doc Calls `Module.Function(*Args)'. `Module' `'__main__'' is the caller's
%% namespace; `Function' may be a dotted path (`'path.join'').
-spec call(atom() | binary(), atom() | binary(), list()) -> {ok, term()} | py_error().
call(Module, Function, Args) ->
    call(context(), Module, Function, Args, #{}, ?DEFAULT_TIMEOUT).

%% @doc `call(Module, Function, Args, Kwargs)', or
%% `call(Context, Module, Function, Args)'.
-spec call(context() | atom() | binary(), atom() | binary(), list() | atom() | binary(),
           map() | list()) -> {ok, term()} | py_error().
call(#py_context{} = Context, Module, Function, Args) ->
    call(Context, Module, Function, Args, #{}, ?DEFAULT_TIMEOUT);
call(Module, Function, Args, Kwargs) ->
    call(context(), Module, Function, Args, Kwargs, ?DEFAULT_TIMEOUT).

%% @doc `call(Module, Function, Args, Kwargs, Timeout)', or
%% `call(Context, Module, Function, Args, Kwargs)'.
-spec call(context() | atom() | binary(), atom() | binary(), atom() | binary() | list(),
           list() | map(), map() | timeout()) -> {ok, term()} | py_error().
call(#py_context{} = Context, Module, Function, Args, Kwargs) ->
    call(Context, Module, Function, Args, Kwargs, ?DEFAULT_TIMEOUT);
call(Module, Function, Args, Kwargs, Timeout) ->
    call(context(), Module, Function, Args, Kwargs, Timeout).

call(Context, Module, Function, Args, Kwargs, Timeout) ->
    check_call(Module, Function, Args, Kwargs),
    check_timeout(Timeout),
    wait(fun(Ref) -> submit_call(Ref, Context, Module, Function, Args, Kwargs, look) end,
         Timeout).

%% @doc Calls `Module.Function(*Args)' without waiting for the result; a
%% failure is logged.
-spec cast(atom() | binary(), atom() | binary(), list()) -> ok.
cast(Module, Function, Args) ->
    cast(Module, Function, Args, #{}).

-spec cast(atom() | binary(), atom() | binary(), list(), map()) -> ok.
cast(Module, Function, Args, Kwargs) ->
    check_call(Module, Function, Args, Kwargs),
    _ = submit_call(make_ref(), context(), Module, Function, Args, Kwargs, false),
    ok.

%% @doc Runs the Python generator `Module.Function(*Args)' on its own thread
%% and streams what it yields into a new channel.
%% @equiv stream(Module, Function, Args, #{})
-spec stream(atom() | binary(), atom() | binary(), list()) ->
          {ok, py_channel:channel(), pending()}.
stream(Module, Function, Args) ->
    stream(Module, Function, Args, #{}).

%% @doc Calls `Module.Function(*Args, **Kwargs)', which returns a generator
%% (or an async generator, or any iterable), on its own thread and sends each
%% item it yields into a new channel, owned by the caller, with backpressure:
%% the generator is paused while the channel is full. The channel is closed
%% when the generator ends, however it ends. Read it with `py_channel:recv/2',
%% `subscribe/2', or from Python; `await(Pending)' then gives `{ok, none}' or
%% the error the generator (or the call) raised, and `cancel(Pending)' stops
%% the generator (its `finally' blocks run).
%%
%% ```
%% {ok, Ch, Pending} = py:stream(builtins, range, [3]),
%% {ok, 0} = py_channel:recv(Ch, 5000),
%% {ok, 1} = py_channel:recv(Ch, 5000),
%% {ok, 2} = py_channel:recv(Ch, 5000),
%% {error, closed} = py_channel:recv(Ch, 5000),
%% {ok, none} = py:await(Pending).
%% '''
%%
%% Options: `kwargs', `context', and `max_size' (the channel's, 65536 bytes
%% by default).
-spec stream(atom() | binary(), atom() | binary(), list(), stream_options()) ->
          {ok, py_channel:channel(), pending()}.
stream(Module, Function, Args, Options) when is_map(Options) ->
    {Context, Kwargs, MaxSize} = stream_options(Options),
    check_call(Module, Function, Args, Kwargs),
    case py_channel:new(#{max_size => MaxSize}) of
        {ok, Channel} ->
            Ref = make_ref(),
            Handle = py_channel_nif:py_stream(Ref, namespace(Context), output(), Module,
                                              Function, Args, Kwargs, Channel),
            {ok, Channel, #py_pending{ref = Ref, handle = Handle}};
        {error, {badarg, max_size}} ->
            error(badarg, [Module, Function, Args, Options])
    end.

stream_options(Options) ->
    maps:fold(fun(kwargs, Kwargs, {Context, _, MaxSize}) when is_map(Kwargs) ->
                      {Context, Kwargs, MaxSize};
                 (context, #py_context{} = Context, {_, Kwargs, MaxSize}) ->
                      {Context, Kwargs, MaxSize};
                 (max_size, MaxSize, {Context, Kwargs, _}) when is_integer(MaxSize), MaxSize >= 0 ->
                      {Context, Kwargs, MaxSize};
                 (_, _, _) ->
                      error(badarg, [Options])
              end, {context(), #{}, ?DEFAULT_STREAM_MAX_SIZE}, Options).

%% @doc Starts a call and returns at once; collect the result with `await'.
-spec spawn_call(atom() | binary(), atom() | binary(), list()) -> pending().
spawn_call(Module, Function, Args) ->
    spawn_call(context(), Module, Function, Args, #{}).

%% @doc `spawn_call(Module, Function, Args, Kwargs)', or
%% `spawn_call(Context, Module, Function, Args)'.
-spec spawn_call(context() | atom() | binary(), atom() | binary(), atom() | binary() | list(),
                 map() | list()) -> pending().
spawn_call(#py_context{} = Context, Module, Function, Args) ->
    spawn_call(Context, Module, Function, Args, #{});
spawn_call(Module, Function, Args, Kwargs) ->
    spawn_call(context(), Module, Function, Args, Kwargs).

%% @doc `spawn_call(Context, Module, Function, Args, Kwargs)'.
-spec spawn_call(context(), atom() | binary(), atom() | binary(), list(), map()) -> pending().
spawn_call(#py_context{} = Context, Module, Function, Args, Kwargs) ->
    check_call(Module, Function, Args, Kwargs),
    Ref = make_ref(),
    Handle = submit_call(Ref, Context, Module, Function, Args, Kwargs, true),
    #py_pending{ref = Ref, handle = Handle}.

%% @doc The result of a `spawn_call', waiting as long as it takes.
-spec await(pending()) -> {ok, term()} | py_error().
await(Pending) ->
    await(Pending, infinity).

%% @doc The result of a `spawn_call', or `{error, timeout}'. A timeout cancels the
%% call (see `cancel/1'); its result never arrives later in the mailbox.
-spec await(pending(), timeout()) -> {ok, term()} | py_error().
await(#py_pending{ref = Ref, handle = Handle}, Timeout) ->
    check_timeout(Timeout),
    receive_answer(Ref, Handle, Timeout).

%% @doc Stops a call started with `spawn_call': its Python code gets
%% `erlang.Cancelled' and `await/1,2' answers `{error, cancelled}'. A call
%% that is already done is unaffected. Returns at once.
-spec cancel(pending()) -> ok.
cancel(#py_pending{handle = Handle}) ->
    py_channel_nif:py_cancel(Handle).

%% @doc The formatted traceback (`traceback.format_exception', file and line of
%% every frame) of the most recent call of this process that answered
%% `{error, {ExceptionName, Message}}', or `undefined' if none did. Calls
%% keep the `{error, {ExceptionName, Message}}' shape of erlang_python; this is
%% where the rest of the story is:
%%
%% ```
%% {error, {'ZeroDivisionError', _}} = py:eval(<<"1 / 0">>),
%% <<"Traceback (most recent call last):\n", _/binary>> = py:last_traceback().
%% '''
-spec last_traceback() -> binary() | undefined.
last_traceback() ->
    get(?LAST_TRACEBACK).

%% @doc Runs `Module.Function(*Args)' as a process linked to the caller, for a
%% supervisor's child spec (`#{start => {py, start_link, [M, F, A]}}').
%% @equiv start_link(Module, Function, Args, #{})
-spec start_link(atom() | binary(), atom() | binary(), list()) -> {ok, pid()}.
start_link(Module, Function, Args) ->
    start_link(Module, Function, Args, #{}).

%% @doc Runs `Module.Function(*Args, **Kwargs)' as a process linked to the
%% caller, which lives exactly as long as the Python call: it exits `normal'
%% when the call returns and `{python, ExceptionName, Message}' when it
%% raises (the traceback is logged at error level). When the process is told
%% to exit (its supervisor shuts it down, a linked process dies, or it is
%% killed), the Python call is cancelled (see `cancel/1'); the process waits
%% for the call to stop, then exits with the reason it was given, so a
%% supervisor restarts a consumer only once the old one has stopped. A
%% channel consumer loses nothing it did not take: its terms stay queued for
%% the next one.
%%
%% Options: `kwargs' (a map, as for `call/4') and `context' (whose namespace
%% `'__main__'' refers to: the new process's own, empty). Any other key, or a
%% bad argument, is a `badarg' error in the caller.
-spec start_link(atom() | binary(), atom() | binary(), list(), start_options()) -> {ok, pid()}.
start_link(Module, Function, Args, Options) when is_map(Options) ->
    {Context, Kwargs} = start_options(Options),
    check_call(Module, Function, Args, Kwargs),
    proc_lib:start_link(?MODULE, init_linked, [self(), Context, Module, Function, Args, Kwargs]).

start_options(Options) ->
    maps:fold(fun(kwargs, Kwargs, {Context, _}) when is_map(Kwargs) -> {Context, Kwargs};
                 (context, #py_context{} = Context, {_, Kwargs}) -> {Context, Kwargs};
                 (_, _, _) -> error(badarg, [Options])
              end, {context(), #{}}, Options).

%% @private
%% `call/3' as `make bench' breaks it down: the result, and when each stage
%% ended, in nanoseconds since the submit (the NIF's clock), the last one
%% (`answered', the caller has it) on Erlang's clock from just before the submit.
-spec timed_call(atom() | binary(), atom() | binary(), list()) ->
          {{ok, term()} | {error, term()}, [{binary(), non_neg_integer()}]}.
timed_call(Module, Function, Args) ->
    check_call(Module, Function, Args, #{}),
    timed(fun(Ref, Namespace) ->
                  py_channel_nif:py_call(Ref, Namespace, output(), Module, Function, Args, #{},
                                         timed)
          end).

%% @private
%% `eval/1' as `make bench' breaks it down (see timed_call/3).
-spec timed_eval(binary()) ->
          {{ok, term()} | {error, term()}, [{binary(), non_neg_integer()}]}.
timed_eval(Code) when is_binary(Code) ->
    timed(fun(Ref, Namespace) ->
                  py_channel_nif:py_eval(Ref, Namespace, output(), Code, #{}, timed)
          end).

timed(Submit) ->
    Namespace = namespace(context()),
    T0 = erlang:monotonic_time(nanosecond),
    {Result, Stages} = wait(fun(Ref) -> Submit(Ref, Namespace) end, ?DEFAULT_TIMEOUT),
    {Result, Stages ++ [{<<"answered">>, erlang:monotonic_time(nanosecond) - T0}]}.

%% @private
%% The process of start_link/4. It traps exits so that an exit signal becomes
%% a cancel of its Python call rather than a death that leaves the call running
%% (a `kill' still ends it at once; the job's monitor of it then cancels).
-spec init_linked(pid(), context(), atom() | binary(), atom() | binary(), list(), map()) ->
          no_return().
init_linked(Parent, Context, Module, Function, Args, Kwargs) ->
    process_flag(trap_exit, true),
    Pending = spawn_call(Context, Module, Function, Args, Kwargs),
    proc_lib:init_ack(Parent, {ok, self()}),
    run_linked(Parent, {Module, Function}, Pending).

run_linked(Parent, Name, #py_pending{ref = Ref} = Pending) ->
    receive
        {py_response, Ref, Result} ->
            exit(linked_exit(Result));
        {py_response, Ref, Result, Traceback} ->
            {Module, Function} = Name,
            logger:error("Python exception in ~ts.~ts (py:start_link, ~p):~n~ts",
                         [Module, Function, self(), Traceback], #{domain => [py_channel]}),
            exit(linked_exit(Result));
        {'EXIT', Parent, Reason} ->
            stop_linked(Pending, Reason);
        {'EXIT', _Linked, normal} ->
            run_linked(Parent, Name, Pending);
        {'EXIT', _Linked, Reason} ->
            stop_linked(Pending, Reason);
        _Unexpected ->
            %% Nothing else is addressed to this process: drop it rather than let the
            %% mailbox grow for as long as the call runs.
            run_linked(Parent, Name, Pending)
    end.

stop_linked(Pending, Reason) ->
    ok = cancel(Pending),
    _ = await(Pending),
    exit(Reason).

linked_exit({ok, _}) -> normal;
linked_exit({error, cancelled}) -> cancelled;
linked_exit({error, {python_not_started, Reason}}) -> {python_not_started, Reason};
linked_exit({error, {Name, Message}}) -> {python, Name, Message}.

%% @doc The default context.
-spec context() -> context().
context() ->
    #py_context{id = 0}.

%% @doc Context number `N' (1-based), as started by `start_contexts'.
-spec context(pos_integer()) -> context().
context(N) when is_integer(N), N >= 1 ->
    #py_context{id = N}.

%% @doc Starts the interpreter if needed and returns the default set of
%% contexts.
-spec start_contexts() -> {ok, [context()]} | py_error().
start_contexts() ->
    start_contexts(?DEFAULT_CONTEXTS).

%% @doc Starts the interpreter if needed and returns `N' contexts.
-spec start_contexts(pos_integer()) -> {ok, [context()]} | py_error().
start_contexts(N) when is_integer(N), N >= 1 ->
    case wait(fun(Ref) -> py_channel_nif:py_start(Ref) end, ?DEFAULT_TIMEOUT) of
        ok -> {ok, [context(I) || I <- lists:seq(1, N)]};
        Error -> Error
    end.

%% @doc Makes `Fun' callable from Python as `erlang.call(Name, *Args)'. A
%% fun of arity 1 receives the argument list (as erlang_python); others are
%% applied to the arguments.
-spec register_function(atom() | binary(), function()) -> ok.
register_function(Name, Fun) when (is_atom(Name) orelse is_binary(Name)), is_function(Fun) ->
    py_runtime:register_function(Name, Fun).

%% @doc Makes `Module:Function(Args)' callable from Python as
%% `erlang.call(Name, *Args)'.
-spec register_function(atom() | binary(), module(), atom()) -> ok.
register_function(Name, Module, Function) when is_atom(Module), is_atom(Function) ->
    register_function(Name, fun(Args) -> Module:Function(Args) end).

-spec unregister_function(atom() | binary()) -> ok.
unregister_function(Name) when is_atom(Name); is_binary(Name) ->
    py_runtime:unregister_function(Name).

%% @doc The version of the embedded Python, as `sys.version'.
-spec version() -> {ok, binary()} | py_error().
version() ->
    eval(<<"__import__('sys').version">>).

%% @doc Which Python the node embeds: its executable, libpython, version (as
%% `"3.12.1"'), prefix, the venv activated at start (or `undefined'), the
%% directories of the app env `python_path', the NIF loaded for it, and
%% `sys.path' as it is now (this starts the interpreter if it is not running).
-spec info() -> {ok, #{executable := binary(), libpython := binary(), version := binary(),
                       prefix := binary(), venv := binary() | undefined,
                       python_path := [binary()], nif := binary(), sys_path := [binary()]}}
              | py_error().
info() ->
    case eval(<<"__import__('sys').path">>) of
        {ok, SysPath} -> {ok, (py_loader:info())#{sys_path => SysPath}};
        Error -> Error
    end.

%% @doc Puts the directory `Path' first on `sys.path' (once: a directory
%% already there moves to the front), so Python finds the modules in it.
-spec add_path(file:name_all()) -> ok | py_error().
add_path(Path) ->
    Absolute = unicode:characters_to_binary(filename:absname(Path)),
    case call(erlang, '_add_path', [Absolute]) of
        {ok, _} -> ok;
        Error -> Error
    end.

%% @doc Makes the packages of the virtualenv at `Path' importable. A venv made
%% by another Python minor version than the embedded one is refused
%% (`{error, {'ValueError', Message}}'): its compiled packages would not load.
-spec activate_venv(file:name_all()) -> ok | py_error().
activate_venv(Path) ->
    case call(erlang, '_activate_venv', [unicode:characters_to_binary(Path)]) of
        {ok, _} -> ok;
        Error -> Error
    end.

%% Internals

%% Where the Python code run for this process prints: its group leader, or a
%% local relay of one on another node (see `py_runtime:output/1').
output() ->
    py_runtime:output(group_leader()).

submit_call(Ref, Context, Module, Function, Args, Kwargs, Reply) ->
    py_channel_nif:py_call(Ref, namespace(Context), output(), Module, Function, Args,
                           Kwargs, Reply).

check_call(Module, Function, Args, Kwargs) ->
    (is_atom(Module) orelse is_binary(Module)) andalso (is_atom(Function) orelse is_binary(Function))
        andalso is_list(Args) andalso is_map(Kwargs)
        orelse error(badarg, [Module, Function, Args, Kwargs]).

%% Before any job is submitted: a bad timeout must not leave an answer on its
%% way to the caller's mailbox.
check_timeout(Timeout) ->
    py_channel:is_timeout(Timeout) orelse error(badarg, [Timeout]).

wait(Submit, Timeout) ->
    Ref = make_ref(),
    Handle = Submit(Ref),
    receive_answer(Ref, Handle, Timeout).

receive_answer(Ref, Handle, Timeout) ->
    case take_answer(Ref, Handle, Timeout) of
        {answer, Result} ->
            Result;
        no_answer ->
            case py_channel_nif:py_abandon(Handle) of
                abandoned ->
                    %% Nobody waits for it any more: stop the Python code too.
                    py_channel_nif:py_cancel(Handle),
                    {error, timeout};
                %% The answer is being sent right now: take it.
                delivered ->
                    {answer, Result} = wait_answer(Ref, infinity),
                    Result
            end
    end.

%% A short call answers within microseconds: the caller looks for the answer
%% in the job's handle a moment before it sleeps in `receive' (py_answer).
take_answer(Ref, Handle, Timeout) ->
    case py_answer:look({job, Handle}, Timeout) of
        {message, Message} -> answer_of(Message);
        'receive' -> wait_answer(Ref, Timeout)
    end.

%% A raised exception's answer carries its traceback, kept for last_traceback/0.
wait_answer(Ref, Timeout) ->
    receive
        {py_response, Ref, _} = Message -> answer_of(Message);
        {py_timed, Ref, _, _} = Message -> answer_of(Message);
        {py_response, Ref, _, _} = Message -> answer_of(Message)
    after Timeout ->
            no_answer
    end.

answer_of({py_response, _Ref, Result}) ->
    {answer, Result};
%% A small plain value kept encoded in the job's handle (py_answer:look/2).
answer_of({py_response, Result}) ->
    {answer, Result};
answer_of({py_timed, Result, Stages}) ->
    {answer, {Result, Stages}};
answer_of({py_timed, _Ref, Result, Stages}) ->
    {answer, {Result, Stages}};
answer_of({py_response, _Ref, Result, Traceback}) ->
    put(?LAST_TRACEBACK, Traceback),
    {answer, Result}.

%% The caller's namespace for `Context', made on first use and kept in the
%% process dictionary, so it is freed with the process.
namespace(#py_context{id = Id}) ->
    Key = {?MODULE, namespace, Id},
    case get(Key) of
        undefined ->
            Namespace = py_channel_nif:py_namespace_new(),
            put(Key, Namespace),
            Namespace;
        Namespace ->
            Namespace
    end.

source(Code) when is_binary(Code) ->
    Code;
source(Code) ->
    case unicode:characters_to_binary(Code) of
        Binary when is_binary(Binary) -> Binary;
        _ -> error(badarg, [Code])
    end.

%% @doc Chooses the Python the node embeds, checks it, and loads the NIF built
%% for it.
%%
%% The Python is configuration, read when `py_channel' starts (or on first use
%% without the application): the OS environment variable `PY_CHANNEL_PYTHON'
%% if set, else the application env `python', else the `python3' on `PATH'.
%% Its version, libpython and prefix are asked of the executable itself; the
%% NIF built for its minor version (`priv/native/py_channel_nif-py3.X.so') is
%% loaded after `py_loader''s own small NIF has opened that libpython. Any
%% CPython 3.10 to 3.13 with a shared libpython works without a rebuild.
%%
%% Anything wrong (no such executable, not CPython, an unsupported version, no
%% shared libpython, a `venv' made by another minor, a libpython that does not
%% open) is `{error, {python, Path, Message}}': `Path' is what was tried and
%% `Message' says what was wrong, in words. The node stays up.
%%
%% A node embeds one Python for its lifetime: once loaded, asking for a Python
%% of another minor version is an error (restart the node to change it).
-module(py_loader).

-export([load/0, info/0, format_error/1, load_and_apply/3]).
-export([open_global/1]).

-nifs([open_global/1]).

-type reason() :: {python, Path :: binary(), Message :: binary()}.
-type info() :: #{executable := binary(), libpython := binary(), version := binary(),
                  prefix := binary(), venv := binary() | undefined,
                  python_path := [binary()], nif := binary()}.
-export_type([reason/0, info/0]).

-define(SUPPORTED, ["3.10", "3.11", "3.12", "3.13"]).
-define(PROBE_TIMEOUT, 30000).

%% What the executable says of itself, one value per line.
-define(PROBE, <<"
import sys, sysconfig
sys.stdout.reconfigure(encoding='utf-8', errors='surrogateescape')
var = sysconfig.get_config_var
for value in (sys.implementation.name, '%d.%d' % sys.version_info[:2],
              sys.version.split()[0], sys.executable, sys.prefix,
              var('LIBDIR'), var('INSTSONAME'), var('LDLIBRARY'), var('MULTIARCH'),
              var('Py_ENABLE_SHARED')):
    print('' if value is None else value)
">>).

%% @doc Loads the NIF for the configured Python, once: `ok', also when it is
%% already loaded for a Python of the same minor version.
-spec load() -> ok | {error, reason()}.
load() ->
    %% Asking the executable costs a process start: not again while the same
    %% Python is configured.
    case persistent_term:get({?MODULE, configured}, undefined) =:= configuration()
         andalso py_channel_nif:loaded() of
        true -> ok;
        false -> global:trans({?MODULE, node()}, fun locked_load/0, [node()])
    end.

%% @private Loads the NIF, then calls `Module:Function(Args)' (a NIF by then)
%% for the stub of `py_channel_nif' that was called before it was loaded; if
%% it cannot be loaded, raises `{py_channel_not_loaded, Reason}'.
-spec load_and_apply(module(), atom(), list()) -> term().
load_and_apply(Module, Function, Args) ->
    case load() of
        ok ->
            Module:loaded() orelse erlang:error({py_channel_not_loaded, {nif_not_loaded, Module}}),
            apply(Module, Function, Args);
        {error, Reason} ->
            erlang:error({py_channel_not_loaded, Reason})
    end.

%% @doc The Python the node embeds: its executable, libpython, version,
%% prefix, the venv activated at start and the directories of `python_path';
%% `undefined' before it is loaded.
-spec info() -> info() | undefined.
info() ->
    persistent_term:get(?MODULE, undefined).

%% @doc A sentence for a reason `load/0' (or the application's start) gave.
-spec format_error(term()) -> unicode:chardata().
format_error({python, Path, Message}) ->
    io_lib:format("py_channel cannot use the Python ~ts: ~ts", [Path, Message]);
format_error(Other) ->
    io_lib:format("~tp", [Other]).

%% @private The loader's own NIF (no Python in it, so it always loads).
-spec open_global(binary()) -> ok | {error, binary()}.
open_global(_Path) ->
    erlang:nif_error({not_loaded, ?MODULE}).

locked_load() ->
    try
        Python = configured_python(),
        Probe = probe(Python),
        Venv = checked_venv(Python, Probe),
        Nif = nif_for(Python, Probe),
        PythonPath = python_path(),
        case persistent_term:get(?MODULE, undefined) of
            undefined ->
                Libpython = open_libpython(Python, Probe),
                Info = #{executable => maps:get(executable, Probe), libpython => Libpython,
                         version => maps:get(full_version, Probe),
                         prefix => maps:get(prefix, Probe), venv => Venv,
                         python_path => PythonPath, nif => Nif},
                load_nif(Python, Info),
                persistent_term:put(?MODULE, Info);
            #{executable := Executable, venv := Venv, python_path := PythonPath} = Info
              when Executable =:= map_get(executable, Probe) ->
                %% The same setup (its module was reloaded, or the application restarted).
                load_nif(Python, Info);
            #{version := Version, executable := Executable} ->
                fail(Python, ["this node already embeds Python ", Version, " (", Executable,
                              ") with the venv and python_path it started with; a node embeds"
                              " one Python, set up once, for its lifetime: restart it to"
                              " change them"])
        end,
        persistent_term:put({?MODULE, configured}, configuration()),
        ok
    catch
        throw:{python, _, _} = Reason -> {error, Reason}
    end.

load_nif(Python, #{nif := Nif} = Info) ->
    case py_channel_nif:load_nif(Nif, load_info(Info)) of
        ok -> ok;
        {error, {reload, _}} -> ok;
        {error, {upgrade, _}} -> ok;
        {error, {_, Text}} -> fail(Python, ["the NIF ", Nif, " did not load: ", Text])
    end.

%% What decides which Python and how it starts.
configuration() ->
    {configured_name(), application:get_env(py_channel, venv),
     application:get_env(py_channel, python_path)}.

configured_name() ->
    case os:getenv("PY_CHANNEL_PYTHON") of
        Set when Set =/= false, Set =/= "" -> Set;
        _ ->
            case application:get_env(py_channel, python) of
                {ok, Python} when is_list(Python); is_binary(Python) ->
                    unicode:characters_to_list(Python);
                _ -> "python3" % unset, or nil from an Elixir config that read no variable
            end
    end.

%% The executable to use, as a path (found on PATH when it has no slash).
configured_python() ->
    Name = configured_name(),
    case lists:member($/, Name) of
        true -> Name;
        false ->
            case os:find_executable(Name) of
                false -> fail(Name, "no such executable on PATH");
                Found -> Found
            end
    end.

probe(Python) ->
    case filelib:is_regular(Python) of
        true -> ok;
        false -> fail(Python, "no such file")
    end,
    Port = try
               open_port({spawn_executable, Python},
                         [{args, ["-S", "-c", ?PROBE]}, exit_status, binary,
                          stderr_to_stdout, hide, {line, 4096}])
           catch error:Error ->
                   fail(Python, io_lib:format("cannot run it (~tp)", [Error]))
           end,
    case collect(Port, [], []) of
        {0, [Name, Minor, Full, Executable, Prefix, LibDir, SoName, LdLibrary, Multiarch,
             Shared]} ->
            Name =:= <<"cpython">> orelse
                fail(Python, ["it is ", Name, ", and py_channel embeds CPython"]),
            #{minor => Minor, full_version => Full, executable => Executable,
              prefix => Prefix, libdir => LibDir, soname => SoName, ldlibrary => LdLibrary,
              multiarch => Multiarch, shared => Shared =:= <<"1">>};
        {0, _} ->
            fail(Python, "it did not answer as a CPython 3 does");
        {timeout, _} ->
            fail(Python, "it did not answer within 30 s");
        {Status, Lines} ->
            fail(Python, io_lib:format("it exited with status ~b: ~ts",
                                       [Status, lists:join(" ", Lines)]))
    end.

collect(Port, Partial, Lines) ->
    receive
        {Port, {data, {noeol, Chunk}}} -> collect(Port, [Partial, Chunk], Lines);
        {Port, {data, {eol, Chunk}}} ->
            collect(Port, [], [iolist_to_binary([Partial, Chunk]) | Lines]);
        {Port, {exit_status, Status}} -> {Status, lists:reverse(Lines)}
    after ?PROBE_TIMEOUT ->
            catch port_close(Port),
            {timeout, lists:reverse(Lines)}
    end.

%% The app env `venv', checked to be a virtualenv made by this Python's minor.
checked_venv(Python, #{minor := Minor}) ->
    case application:get_env(py_channel, venv) of
        {ok, Configured} when is_list(Configured), Configured =/= "";
                              is_binary(Configured), Configured =/= <<>> ->
            Venv = unicode:characters_to_binary(filename:absname(Configured)),
            Config = filename:join(Venv, "pyvenv.cfg"),
            case file:read_file(Config) of
                {ok, Text} ->
                    case venv_minor(Text) of
                        Minor -> Venv;
                        undefined ->
                            fail(Python, ["the venv ", Venv, " does not say its version in ",
                                          Config]);
                        Other ->
                            fail(Python, ["the venv ", Venv, " was made by Python ", Other,
                                          ", but this Python is ", Minor,
                                          ": make the venv with this Python, or configure"
                                          " the Python that made it"])
                    end;
                {error, _} ->
                    fail(Python, ["the venv ", Venv, " is not a virtualenv (no ", Config,
                                  ")"])
            end;
        _ -> undefined % unset, or nil from an Elixir config that read no variable
    end.

%% `version = 3.12.1' (venv, virtualenv) or `version_info = 3.12.1.final.0' (uv).
venv_minor(Text) ->
    case re:run(Text, "^\\s*version(?:_info)?\\s*=\\s*([0-9]+)\\.([0-9]+)",
                [multiline, {capture, all_but_first, binary}]) of
        {match, [Major, Minor]} -> <<Major/binary, ".", Minor/binary>>;
        nomatch -> undefined
    end.

nif_for(Python, #{minor := Minor, full_version := Full}) ->
    lists:member(binary_to_list(Minor), ?SUPPORTED) orelse
        fail(Python, ["it is Python ", Full, ", and py_channel supports Python ",
                      lists:join(", ", ?SUPPORTED)]),
    Nif = filename:join([priv_dir(), "native", ["py_channel_nif-py", Minor]]),
    filelib:is_regular(<<Nif/binary, ".so">>) orelse
        fail(Python, ["this build of py_channel has no NIF for Python ", Minor, " (",
                      Nif, ".so): build it with scripts/build_nif.sh"]),
    Nif.

%% Opens the executable's libpython with its symbols global, for the NIF about
%% to be loaded and for the C extension modules Python will load.
open_libpython(Python, #{shared := false, full_version := Full}) ->
    fail(Python, ["this Python ", Full, " was built without a shared libpython",
                  " (configure --enable-shared; pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared,",
                  " uv and python.org builds have one)"]);
open_libpython(Python, #{libdir := LibDir, soname := SoName, ldlibrary := LdLibrary,
                         multiarch := Multiarch}) ->
    Candidates = [filename:join(Dir, Name)
                  || Dir <- [LibDir, filename:join(LibDir, Multiarch)], Dir =/= <<>>,
                     Name <- [SoName, LdLibrary], Name =/= <<>>],
    Libpython = case [Path || Path <- Candidates, filelib:is_regular(Path)] of
                    [Found | _] -> Found;
                    [] when SoName =/= <<>> -> SoName; % left to the dynamic loader's search
                    [] -> fail(Python, "it names no libpython (sysconfig INSTSONAME)")
                end,
    ensure_loader(Python),
    case open_global(Libpython) of
        ok -> Libpython;
        {error, Why} -> fail(Python, ["its libpython ", Libpython, " did not open: ", Why])
    end.

ensure_loader(Python) ->
    Path = filename:join([priv_dir(), "native", "py_loader"]),
    case erlang:load_nif(unicode:characters_to_list(Path), 0) of
        ok -> ok;
        {error, {reload, _}} -> ok;
        {error, {upgrade, _}} -> ok;
        {error, {_, Text}} -> fail(Python, ["the loader NIF ", Path, " did not load: ", Text])
    end.

%% The app env `python_path': directories put ahead on sys.path at start. A
%% relative one is resolved against py_channel's priv dir, `{App, Dir}' against
%% the priv dir of `App'.
python_path() ->
    [unicode:characters_to_binary(path_entry(Entry))
     || Entry <- application:get_env(py_channel, python_path, [])].

path_entry({App, Dir}) when is_atom(App) ->
    case code:priv_dir(App) of
        {error, bad_name} -> fail(Dir, io_lib:format("python_path: no application ~p", [App]));
        Priv -> filename:join(Priv, Dir)
    end;
path_entry(Dir) ->
    case filename:pathtype(Dir) of
        absolute -> Dir;
        _ -> filename:join(priv_dir(), Dir)
    end.

load_info(#{executable := Executable, venv := Venv, python_path := Path}) ->
    #{executable => Executable,
      erlang_package => unicode:characters_to_binary(filename:join(priv_dir(), "python")),
      python_path => Path,
      venv => Venv}.

%% py_channel's priv dir, or the one beside this module's ebin when the code
%% path has no `py_channel' application (a bare `erl -pa ebin').
priv_dir() ->
    Dir = case code:priv_dir(py_channel) of
              {error, bad_name} ->
                  filename:join(filename:dirname(filename:dirname(code:which(?MODULE))),
                                "priv");
              Found -> Found
          end,
    unicode:characters_to_binary(filename:absname(Dir)).

-spec fail(file:name_all(), unicode:chardata()) -> no_return().
fail(Path, Message) ->
    throw({python, unicode:characters_to_binary(Path), unicode:characters_to_binary(Message)}).

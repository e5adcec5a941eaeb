%% Choosing the Python at start (py_loader): each test starts a node of its
%% own with OTP's `peer', since a node embeds one Python for its lifetime.
-module(py_loader_tests).

-include_lib("eunit/include/eunit.hrl").

-define(CALL_TIMEOUT, 60000).

loader_test_() ->
    {timeout, 300,
     [{"the app env python chooses the Python, without a rebuild",
       fun app_env_chooses_the_python/0},
      {"PY_CHANNEL_PYTHON overrides the app env", fun os_env_overrides_app_env/0},
      {"a missing Python is an error of the start, the node stays up",
       fun missing_python/0},
      {"what the executable says of itself is checked", fun probe_answers_checked/0},
      {"a libpython that does not open is an error", fun unloadable_libpython/0},
      {"a venv of another minor is refused at start", fun venv_of_another_minor/0},
      {"a venv of this minor is activated at start", fun venv_activated/0},
      {"python_path entries and py:add_path/1 reach sys.path", fun python_path/0},
      {"another Python once one is loaded is an error", fun one_python_per_node/0},
      {"py:activate_venv/1 refuses a venv of another minor",
       fun activate_venv_of_another_minor/0},
      {"without the application, the first call loads the NIF and is answered",
       fun loaded_on_first_use/0},
      {"await_spin is read at start, and a bad one is an error of the start",
       fun await_spin_configured/0}]}.

app_env_chooses_the_python() ->
    Other = other_python(),
    %% nil (an Elixir config that read no variable) is no venv.
    with_node([{"PY_CHANNEL_PYTHON", false}], [{python, Other}, {venv, nil}],
              fun(Node) ->
                      ?assertMatch({ok, _}, call(Node, application, ensure_all_started,
                                                 [py_channel])),
                      {ok, Info} = call(Node, py, info, []),
                      ?assertEqual(executable_of(Other), maps:get(executable, Info)),
                      ?assertEqual(minor(Other), minor_of(maps:get(version, Info))),
                      ?assertEqual({ok, minor(Other)},
                                   call(Node, py, eval,
                                        [<<"'%d.%d' % __import__('sys').version_info[:2]">>])),
                      %% A C extension module: libpython's symbols are global.
                      ?assertEqual({ok, 4.0}, call(Node, py, call, [math, sqrt, [16]])),
                      NifFile = <<(maps:get(nif, Info))/binary, ".so">>,
                      ?assertEqual(<<"py_channel_nif-py", (minor(Other))/binary, ".so">>,
                                   filename:basename(NifFile)),
                      ?assert(filelib:is_regular(maps:get(libpython, Info))),
                      ?assert(lists:member(maps:get(prefix, Info),
                                           maps:get(sys_path, Info) ++ [maps:get(prefix, Info)]))
              end).

os_env_overrides_app_env() ->
    Other = other_python(),
    Default = executable_of(default_python()),
    with_node([{"PY_CHANNEL_PYTHON", Other}], [{python, binary_to_list(Default)}],
              fun(Node) ->
                      {ok, _} = call(Node, application, ensure_all_started, [py_channel]),
                      {ok, Info} = call(Node, py, info, []),
                      ?assertEqual(executable_of(Other), maps:get(executable, Info))
              end).

missing_python() ->
    Missing = "/nonexistent/bin/python3",
    with_node([{"PY_CHANNEL_PYTHON", false}], [{python, Missing}],
              fun(Node) ->
                      {error, {py_channel, {Reason, _}}} =
                          call(Node, application, ensure_all_started, [py_channel]),
                      ?assertEqual({python, list_to_binary(Missing), <<"no such file">>},
                                   Reason),
                      ?assertEqual("py_channel cannot use the Python /nonexistent/bin/python3:"
                                   " no such file",
                                   lists:flatten(call(Node, py_channel_app, format_error,
                                                      [Reason]))),
                      %% The node is up, and code that uses Python without the
                      %% application gets the same reason as an error.
                      ?assertEqual(2, call(Node, erlang, '+', [1, 1])),
                      ?assertMatch({'EXIT', {{py_channel_not_loaded, Reason}, _}},
                                   call(Node, erlang, apply,
                                        [fun() -> catch py:eval(<<"1">>) end, []])),
                      ?assertEqual(undefined, call(Node, py_loader, info, []))
              end),
    with_node([{"PY_CHANNEL_PYTHON", "no-such-python9"}], [],
              fun(Node) ->
                      ?assertMatch({error, {py_channel, {{python, <<"no-such-python9">>,
                                                          <<"no such executable on PATH">>},
                                                         _}}},
                                   call(Node, application, ensure_all_started, [py_channel]))
              end).

%% An executable that answers the probe as told: each answer is one of the
%% ways a Python can be unusable.
probe_answers_checked() ->
    Cases = [{["cpython", "3.9", "3.9.18"], <<"it is Python 3.9.18, and py_channel supports "
                                              "Python 3.10, 3.11, 3.12, 3.13">>},
             {["pypy", "3.10", "3.10.14"], <<"it is pypy, and py_channel embeds CPython">>},
             {["cpython", "3.12", "3.12.1", "/x/bin/python3", "/x", "/x/lib",
               "libpython3.12.so.1.0", "libpython3.12.so", "", "0"],
              <<"this Python 3.12.1 was built without a shared libpython">>},
             {exit, <<"it exited with status 3: broken">>}],
    lists:foreach(
      fun({Answer, Expected}) ->
              Fake = fake_python(Answer),
              with_node([{"PY_CHANNEL_PYTHON", Fake}], [],
                        fun(Node) ->
                                {error, {py_channel, {{python, Path, Message}, _}}} =
                                    call(Node, application, ensure_all_started, [py_channel]),
                                ?assertEqual(list_to_binary(Fake), Path),
                                ?assertEqual(Expected,
                                             binary:part(Message, 0,
                                                         min(byte_size(Message),
                                                             byte_size(Expected))))
                        end)
      end, Cases).

unloadable_libpython() ->
    %% No file of that name anywhere: the dynamic loader's own words come back.
    Fake = fake_python(["cpython", "3.12", "3.12.1", "/x/bin/python3", "/x", "/x/lib",
                        "libpython3.12-absent.so.1.0", "", "", "1"]),
    with_node([{"PY_CHANNEL_PYTHON", Fake}], [],
              fun(Node) ->
                      {error, {py_channel, {{python, _, Message}, _}}} =
                          call(Node, application, ensure_all_started, [py_channel]),
                      ?assertMatch({match, _},
                                   re:run(Message, "^its libpython libpython3.12-absent.so.1.0"
                                          " did not open: .*cannot open shared object file"))
              end).

venv_of_another_minor() ->
    Venv = temp_dir("venv-3.9"),
    ok = file:write_file(filename:join(Venv, "pyvenv.cfg"),
                         <<"home = /usr/bin\nversion = 3.9.18\n">>),
    with_node([], [{venv, Venv}],
              fun(Node) ->
                      {error, {py_channel, {{python, _, Message}, _}}} =
                          call(Node, application, ensure_all_started, [py_channel]),
                      Expected = iolist_to_binary(["the venv ", Venv, " was made by Python 3.9,"
                                                   " but this Python is ",
                                                   minor(default_python())]),
                      ?assertEqual(Expected, binary:part(Message, 0, byte_size(Expected))),
                      ?assertEqual(2, call(Node, erlang, '+', [1, 1]))
              end),
    NotAVenv = temp_dir("not-a-venv"),
    with_node([], [{venv, NotAVenv}],
              fun(Node) ->
                      {error, {py_channel, {{python, _, Message}, _}}} =
                          call(Node, application, ensure_all_started, [py_channel]),
                      ?assertMatch({match, _}, re:run(Message, "is not a virtualenv"))
              end).

venv_activated() ->
    Venv = temp_dir("venv-same-minor"),
    Python = binary_to_list(executable_of(default_python())),
    {0, _} = run(Python, ["-m", "venv", "--without-pip", Venv]),
    [SitePackages] = filelib:wildcard(filename:join([Venv, "lib", "python*", "site-packages"])),
    ok = file:write_file(filename:join(SitePackages, "only_in_the_venv.py"),
                         <<"ANSWER = 42\n">>),
    with_node([], [{venv, Venv}],
              fun(Node) ->
                      {ok, _} = call(Node, application, ensure_all_started, [py_channel]),
                      ?assertEqual({ok, 42}, call(Node, py, eval,
                                                  [<<"__import__('only_in_the_venv').ANSWER">>])),
                      {ok, Info} = call(Node, py, info, []),
                      ?assertEqual(list_to_binary(Venv), maps:get(venv, Info))
              end).

python_path() ->
    First = temp_dir("python-path-first"),
    Later = temp_dir("python-path-later"),
    ok = file:write_file(filename:join(First, "app_module.py"), <<"WHERE = 'first'\n">>),
    ok = file:write_file(filename:join(Later, "later_module.py"), <<"WHERE = 'later'\n">>),
    with_node([{"PY_CHANNEL_PYTHON", false}],
              [{python_path, [First, "native", {stdlib, "examples"}]}],
              fun(Node) ->
                      {ok, _} = call(Node, application, ensure_all_started, [py_channel]),
                      ?assertEqual({ok, <<"first">>},
                                   call(Node, py, eval, [<<"__import__('app_module').WHERE">>])),
                      ?assertMatch({error, {'ModuleNotFoundError', _}},
                                   call(Node, py, eval, [<<"__import__('later_module')">>])),
                      ?assertEqual(ok, call(Node, py, add_path, [Later])),
                      ?assertEqual(ok, call(Node, py, add_path, [Later])),
                      ?assertEqual({ok, <<"later">>},
                                   call(Node, py, eval,
                                        [<<"__import__('later_module').WHERE">>])),
                      {ok, #{sys_path := SysPath, python_path := Configured}} =
                          call(Node, py, info, []),
                      %% Relative: in py_channel's priv dir; {App, Dir}: in App's.
                      Native = list_to_binary(filename:join(call(Node, code, priv_dir,
                                                                 [py_channel]), "native")),
                      Examples = list_to_binary(filename:join(call(Node, code, priv_dir,
                                                                   [stdlib]), "examples")),
                      ?assertEqual([list_to_binary(First), Native, Examples], Configured),
                      %% add_path/1 puts it first, once; the configured ones follow in order.
                      ?assertEqual([list_to_binary(Later)],
                                   [E || E <- SysPath, E =:= list_to_binary(Later)]),
                      ?assertEqual(list_to_binary(Later), hd(SysPath)),
                      ?assert(index_of(list_to_binary(First), SysPath)
                              < index_of(Native, SysPath)),
                      ?assert(index_of(Native, SysPath) < index_of(Examples, SysPath))
              end).

one_python_per_node() ->
    Other = other_python(),
    with_node([{"PY_CHANNEL_PYTHON", false}], [],
              fun(Node) ->
                      {ok, _} = call(Node, application, ensure_all_started, [py_channel]),
                      {ok, <<"3", _/binary>>} = call(Node, py, eval,
                                                     [<<"__import__('sys').version">>]),
                      ok = call(Node, application, stop, [py_channel]),
                      ok = call(Node, application, set_env, [py_channel, python, Other]),
                      {error, {py_channel, {{python, _, Message}, _}}} =
                          call(Node, application, ensure_all_started, [py_channel]),
                      ?assertMatch({match, _},
                                   re:run(Message, "^this node already embeds Python "
                                          "[0-9.]+ .*restart it to change them$")),
                      %% The Python already embedded still answers.
                      ok = call(Node, application, unset_env, [py_channel, python]),
                      {ok, _} = call(Node, application, ensure_all_started, [py_channel]),
                      ?assertEqual({ok, 4.0}, call(Node, py, call, [math, sqrt, [16]]))
              end).

activate_venv_of_another_minor() ->
    Venv = temp_dir("venv-3.8"),
    ok = file:write_file(filename:join(Venv, "pyvenv.cfg"),
                         <<"home = /usr/bin\nversion_info = 3.8.10.final.0\n">>),
    {ok, _} = application:ensure_all_started(py_channel),
    {error, {'ValueError', Message}} = py:activate_venv(Venv),
    ?assertMatch({match, _}, re:run(Message, "was made by Python 3.8, and the embedded Python"
                                    " is 3\\.[0-9]+")).

%% Each first call on a node of its own: the stub that loads the NIF must not
%% be returned into once loading has patched it (that crashed the VM).
loaded_on_first_use() ->
    FirstCalls = [{fun() -> is_reference(py_channel_nif:py_namespace_new()) end, true},
                  {fun() -> py:eval(<<"6 * 7">>) end, {ok, 42}},
                  {fun() -> element(1, py_channel:new()) end, ok},
                  {fun() -> py_channel_nif:live_channels() >= 0 end, true}],
    lists:foreach(
      fun({First, Expected}) ->
              with_node([], [],
                        fun(Node) ->
                                ?assertEqual(Expected, call(Node, erlang, apply, [First, []])),
                                ?assertEqual({ok, 4.0},
                                             call(Node, py, call, [math, sqrt, [16]]))
                        end)
      end, FirstCalls).

%% 100 calls to a Python reader that squares what it gets, on the node this runs on.
squares() ->
    {ok, Ch} = py_channel:new(),
    ok = py:exec(<<"def square(ref):\n    for caller, n in Channel(ref):\n        reply(caller, n * n)\n">>),
    Server = py:spawn_call('__main__', square, [Ch]),
    Replies = [py_channel:call(Ch, N, 5000) || N <- lists:seq(1, 100)],
    ok = py_channel:close(Ch),
    {ok, none} = py:await(Server, 5000),
    Replies.

await_spin_configured() ->
    lists:foreach(
      fun(Micros) ->
              with_node([], [{await_spin, Micros}],
                        fun(Node) ->
                                {ok, _} = call(Node, application, ensure_all_started,
                                               [py_channel]),
                                Expected = case call(Node, erlang, system_info,
                                                     [schedulers_online]) of
                                               1 -> 0;
                                               _ -> Micros
                                           end,
                                ?assertEqual(Expected, call(Node, persistent_term, get,
                                                            [{py_answer, await_spin}])),
                                %% Answers come whether the caller looks for them or sleeps.
                                ?assertEqual({ok, 4.0}, call(Node, py, call, [math, sqrt, [16]])),
                                ?assertMatch({error, timeout},
                                             call(Node, py, eval,
                                                  [<<"__import__('time').sleep(1)">>, #{}, 50])),
                                %% And so do replies to py_channel:call/3.
                                ?assertEqual([{ok, N * N} || N <- lists:seq(1, 100)],
                                             call(Node, erlang, apply, [fun squares/0, []]))
                        end)
      end, [0, 5]),
    with_node([], [{await_spin, fast}],
              fun(Node) ->
                      {error, {py_channel, {Reason, _}}} =
                          call(Node, application, ensure_all_started, [py_channel]),
                      ?assertEqual({badarg, {await_spin, fast}}, Reason),
                      ?assertEqual("py_channel: await_spin must be a number of microseconds,"
                                   " 0 or more, not fast",
                                   lists:flatten(call(Node, py_channel_app, format_error,
                                                      [Reason])))
              end).

%% Helpers

%% Runs `Test(Node)' against a new node with the OS environment `Env' (false
%% unsets; what it does not name is this node's, PY_CHANNEL_PYTHON included) and
%% the py_channel app env `AppEnv', set before anything starts.
with_node(Env, AppEnv, Test) ->
    Paths = lists:usort([filename:dirname(code:which(M))
                         || M <- [py_channel, ?MODULE, py_test_support]]),
    {ok, Peer, _} = peer:start_link(#{connection => standard_io,
                                      args => lists:append([["-pa", P] || P <- Paths]),
                                      env => Env}),
    try
        ok = call(Peer, application, load, [py_channel]),
        [ok = call(Peer, application, set_env, [py_channel, Key, Value])
         || {Key, Value} <- AppEnv],
        Test(Peer)
    after
        peer:stop(Peer)
    end.

call(Peer, Module, Function, Args) ->
    peer:call(Peer, Module, Function, Args, ?CALL_TIMEOUT).

%% The `python3' this suite's own node embeds.
default_python() ->
    {ok, _} = application:ensure_all_started(py_channel),
    maps:get(executable, py_loader:info()).

%% A Python of another supported minor than the default one, from pyenv.
other_python() ->
    Default = minor(default_python()),
    Root = case os:getenv("PYENV_ROOT") of
               false -> filename:join(os:getenv("HOME"), ".pyenv");
               Set -> Set
           end,
    Candidates = [P || Minor <- ["3.12", "3.13", "3.11", "3.10"],
                       list_to_binary(Minor) =/= Default,
                       P <- lists:reverse(filelib:wildcard(
                                            filename:join([Root, "versions", Minor ++ ".*",
                                                           "bin", "python3"])))],
    case Candidates of
        [Python | _] -> Python;
        [] -> error({no_second_python_under, Root})
    end.

%% `major.minor' of a Python executable, asked of it.
minor(Python) ->
    {0, Out} = run(unicode:characters_to_list(Python),
                   ["-c", "import sys; print('%d.%d' % sys.version_info[:2], end='')"]),
    Out.

minor_of(Version) ->
    [Major, Minor | _] = binary:split(Version, <<".">>, [global]),
    <<Major/binary, ".", Minor/binary>>.

%% The executable as it calls itself (what py_loader records).
executable_of(Python) ->
    {0, Out} = run(unicode:characters_to_list(Python),
                   ["-c", "import sys; print(sys.executable, end='')"]),
    Out.

run(Executable, Args) ->
    Port = open_port({spawn_executable, Executable},
                     [{args, Args}, exit_status, binary, stderr_to_stdout]),
    collect(Port, <<>>).

collect(Port, Out) ->
    receive
        {Port, {data, Data}} -> collect(Port, <<Out/binary, Data/binary>>);
        {Port, {exit_status, Status}} -> {Status, Out}
    after 60000 -> error(timeout)
    end.

%% A script that prints `Lines' (the first of the probe's ten answers; the
%% rest are those of a usable Python 3.12) as the probe's answer, or fails.
fake_python(Answer) ->
    Dir = temp_dir("fake-python"),
    Path = filename:join(Dir, "python3"),
    Body = case Answer of
               exit -> "echo broken; exit 3\n";
               Given ->
                   Usable = ["cpython", "3.12", "3.12.1", "/x/bin/python3", "/x", "/x/lib",
                             "libpython3.12.so.1.0", "libpython3.12.so", "", "1"],
                   Lines = Given ++ lists:nthtail(length(Given), Usable),
                   ["printf '%s\\n'", [[" '", Line, "'"] || Line <- Lines], "\n"]
           end,
    ok = file:write_file(Path, ["#!/bin/sh\n", Body]),
    ok = file:change_mode(Path, 8#755),
    Path.

temp_dir(Name) ->
    Dir = filename:join(["/tmp", "py_loader_tests-" ++ os:getpid(),
                         Name ++ "-" ++ integer_to_list(erlang:unique_integer([positive]))]),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Dir.

index_of(Element, List) ->
    length(lists:takewhile(fun(E) -> E =/= Element end, List)) + 1.

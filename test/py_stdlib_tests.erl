%% Real-world Python inside the BEAM: C extension modules, subprocesses,
%% threads, asyncio, and packages from a virtualenv.
-module(py_stdlib_tests).

-include_lib("eunit/include/eunit.hrl").

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

stdlib_test_() ->
    {setup, fun setup/0,
     [{"math, json, decimal", fun pure_and_c_modules/0},
      {"C extension modules load (libpython is global)", fun c_extensions/0},
      {"asyncio runs a coroutine", fun asyncio_runs/0},
      {"subprocess.run returns (SIGCHLD is default)", fun subprocess_returns/0},
      {"threading works", fun threading_works/0},
      {"sys.executable is the real interpreter", fun real_executable/0},
      {timeout, 120, {"activate_venv makes a venv's packages importable",
                      fun venv_packages/0}}]}.

pure_and_c_modules() ->
    ?assertEqual({ok, 5.0}, py:call(math, hypot, [3, 4])),
    ?assertEqual({ok, #{<<"a">> => [1, 2]}}, py:call(json, loads, [<<"{\"a\": [1, 2]}">>])),
    ?assertEqual({ok, <<"3.3">>},
                 py:eval(<<"str(__import__('decimal').Decimal('1.1') + "
                           "__import__('decimal').Decimal('2.2'))">>)).

c_extensions() ->
    Modules = [<<"_socket">>, <<"sqlite3">>, <<"ctypes">>, <<"_struct">>, <<"select">>, <<"array">>,
               <<"_json">>, <<"zlib">>, <<"_hashlib">>],
    [?assertEqual({ok, M}, py:eval(<<"__import__(m).__name__">>, #{m => M})) || M <- Modules],
    ?assertEqual({ok, {1, <<"x">>}},
                 py:eval(<<"__import__('sqlite3').connect(':memory:')"
                           ".execute(\"select 1, 'x'\").fetchone()">>)),
    ?assertEqual({ok, 7}, py:eval(<<"__import__('ctypes').c_int(7).value">>)),
    ok = py:exec(<<"import socket\ns = socket.socket()\ns.close()\n">>).

asyncio_runs() ->
    ok = py:exec(<<"import asyncio\n"
                   "async def gather_squares(n):\n"
                   "    async def square(i):\n"
                   "        await asyncio.sleep(0.01)\n"
                   "        return i * i\n"
                   "    return await asyncio.gather(*(square(i) for i in range(n)))\n">>),
    ?assertEqual({ok, [0, 1, 4, 9, 16]}, py:eval(<<"asyncio.run(gather_squares(5))">>)).

subprocess_returns() ->
    ?assertEqual({ok, <<"hello\n">>},
                 py:eval(<<"__import__('subprocess').run(['echo', 'hello'], "
                           "capture_output=True, text=True, timeout=20).stdout">>)),
    ?assertEqual({ok, 3}, py:eval(<<"__import__('subprocess').call(['sh', '-c', 'exit 3'])">>)).

threading_works() ->
    ok = py:exec(<<"import threading\n"
                   "results = []\n"
                   "lock = threading.Lock()\n"
                   "def work(i):\n"
                   "    with lock:\n"
                   "        results.append(i * 10)\n"
                   "threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]\n"
                   "for t in threads: t.start()\n"
                   "for t in threads: t.join()\n">>),
    ?assertEqual({ok, [0, 10, 20, 30, 40, 50, 60, 70]}, py:eval(<<"sorted(results)">>)).

real_executable() ->
    {ok, Executable} = py:eval(<<"__import__('sys').executable">>),
    ?assert(filelib:is_regular(Executable)),
    ?assertMatch({match, _}, re:run(Executable, "python3?(\\.[0-9]+)?$")),
    ?assertEqual({ok, <<"ok">>},
                 py:eval(<<"__import__('subprocess').run([__import__('sys').executable, '-c', "
                           "'print(\"ok\", end=\"\")'], capture_output=True, text=True).stdout">>)).

%% A venv made by the test, with a tiny package installed into it offline
%% from a wheel the test builds itself.
venv_packages() ->
    Dir = temp_dir(),
    Venv = filename:join(Dir, "venv"),
    ok = py:exec(<<"import os, subprocess, sys, zipfile, base64, hashlib\n"
                   "def make_venv_with_package(root, venv):\n"
                   "    subprocess.run([sys.executable, '-m', 'venv', venv], check=True)\n"
                   "    wheel = os.path.join(root, 'tinypkg_for_test-1.0-py3-none-any.whl')\n"
                   "    files = {\n"
                   "        'tinypkg_for_test/__init__.py': b'ANSWER = 42\\n',\n"
                   "        'tinypkg_for_test-1.0.dist-info/METADATA':\n"
                   "            b'Metadata-Version: 2.1\\nName: tinypkg-for-test\\nVersion: 1.0\\n',\n"
                   "        'tinypkg_for_test-1.0.dist-info/WHEEL':\n"
                   "            b'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\n'\n"
                   "            b'Tag: py3-none-any\\n',\n"
                   "    }\n"
                   "    record = []\n"
                   "    with zipfile.ZipFile(wheel, 'w') as zf:\n"
                   "        for name, data in files.items():\n"
                   "            zf.writestr(name, data)\n"
                   "            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())\n"
                   "            record.append('%s,sha256=%s,%d' % (name, digest.rstrip(b'=').decode(), len(data)))\n"
                   "        record.append('tinypkg_for_test-1.0.dist-info/RECORD,,')\n"
                   "        zf.writestr('tinypkg_for_test-1.0.dist-info/RECORD', '\\n'.join(record) + '\\n')\n"
                   "    pip = os.path.join(venv, 'bin', 'python')\n"
                   "    subprocess.run([pip, '-m', 'pip', 'install', '--no-index', '--quiet',\n"
                   "                    '--disable-pip-version-check', wheel], check=True)\n">>),
    {ok, none} = py:call('__main__', make_venv_with_package,
                         [list_to_binary(Dir), list_to_binary(Venv)], #{}, 110000),
    ?assertMatch({error, {'ModuleNotFoundError', _}},
                 py:eval(<<"__import__('tinypkg_for_test').ANSWER">>)),
    ?assertEqual(ok, py:activate_venv(Venv)),
    ?assertEqual({ok, 42}, py:eval(<<"__import__('tinypkg_for_test').ANSWER">>)),
    ?assertMatch({error, {'FileNotFoundError', _}}, py:activate_venv(filename:join(Dir, "none"))).

temp_dir() ->
    Base = case os:getenv("TMPDIR") of false -> "/tmp"; T -> T end,
    Dir = filename:join(Base, "py_channel_test_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Dir.

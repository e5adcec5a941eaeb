%% The type stubs of the Python package against the runtime: mypy.stubtest,
%% run inside the embedded interpreter, the only place the native module
%% `_py_channel' exists (the NIF registers it before Python starts). It checks
%% `_py_channel.pyi' against that module and `erlang/*.pyi' against the
%% package, both as installed in priv/python, with no allowlist: a name missing
%% on either side, or a signature that differs, fails the suite.
%%
%% mypy is installed by scripts/setup.sh (`make setup', `make test') into
%% .tools/mypy/python<X.Y> for the Python the node embeds; `mypy --strict' over
%% the package is the Makefile's `test-mypy'.
-module(py_stubs_tests).

-include_lib("eunit/include/eunit.hrl").

-define(STUBTEST, <<"
import contextlib, io, os, sys, tempfile

def run_stubtest(mypy_dir):
    sys.path.insert(0, mypy_dir)
    try:
        try:
            import mypy.stubtest
        except ImportError:
            raise RuntimeError(
                f'mypy is not installed for {sys.executable} (looked in {mypy_dir}): '
                'make setup installs it') from None
        import erlang
        # The stubs shipped beside the package the runtime imported (priv/python),
        # given as mypy_path: in a sys.path entry, which mypy reads as site-packages,
        # it would not take a single-module stub such as _py_channel.pyi (PEP 561).
        stubs = os.path.dirname(os.path.dirname(os.path.abspath(erlang.__file__)))
        with tempfile.TemporaryDirectory() as config_dir:
            config = os.path.join(config_dir, 'mypy.ini')
            with open(config, 'w') as file:
                file.write(f'[mypy]\\nmypy_path = {stubs}\\n')
            report = io.StringIO()
            with contextlib.redirect_stdout(report):
                # `erlang' takes its submodules (erlang.channel) with it.
                status = mypy.stubtest.test_stubs(mypy.stubtest.parse_options(
                    ['--mypy-config-file', config, '_py_channel', 'erlang']))
        return (status, report.getvalue())
    finally:
        sys.path.remove(mypy_dir)
">>).

stubs_test_() ->
    {setup, fun setup/0,
     {timeout, 300, {"mypy.stubtest: the stubs match _py_channel and erlang",
                     fun stubs_match_runtime/0}}}.

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

stubs_match_runtime() ->
    ok = py:exec(?STUBTEST),
    {ok, Version} = py:eval(<<"'%d.%d' % __import__('sys').version_info[:2]">>),
    MypyDir = filename:join([project_root(), ".tools", "mypy", <<"python", Version/binary>>]),
    case py:eval(<<"run_stubtest(d)">>, #{d => MypyDir}, 280000) of
        {ok, {0, _}} ->
            ok;
        {ok, {_, Report}} ->
            %% Printed whole: it names each difference, and EUnit would cut it short.
            io:format(user, "~nmypy.stubtest found differences:~n~ts~n", [Report]),
            error(stubs_differ_from_runtime);
        {error, Reason} ->
            io:format(user, "~nmypy.stubtest did not run: ~tp~n", [Reason]),
            error({stubtest_did_not_run, Reason})
    end.

%% The checkout this module was compiled from (rebar3 compiles it from test/).
project_root() ->
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(Source)).

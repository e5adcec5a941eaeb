%% Python's output reaches Erlang (issue 11): print and sys.stdout/stderr
%% writes go to the caller's group leader, line by line; a piped node prints
%% them on its standard output.
-module(py_output_tests).

-include_lib("eunit/include/eunit.hrl").

-export([log/2]).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

output_test_() ->
    {setup, fun setup/0,
     [{"print reaches the caller's group leader, line by line", fun to_group_leader/0},
      {"a piped erl -noshell prints Python's output", fun piped_node/0},
      {"logging records reach logger, levels mapped", fun logging_to_logger/0}]}.

to_group_leader() ->
    Collector = spawn_link(fun() -> collect([]) end),
    Original = group_leader(),
    group_leader(Collector, self()),
    try
        ok = py:exec(<<"import sys\n"
                       "print('first line')\n"
                       "print('two', 'parts', end='')\n"
                       "print(' joined')\n"
                       "sys.stderr.write('to stderr\\n')\n"
                       "print('no newline at the end', end='')\n">>),
        {ok, 42} = py:eval(<<"print('from eval') or 42">>),
        {ok, none} = py:call(builtins, print, [<<"from call">>])
    after
        group_leader(Original, self())
    end,
    Collector ! {lines, self()},
    Text = receive {lines, Collected} -> Collected after 5000 -> timeout end,
    ?assertEqual(<<"first line\ntwo parts joined\nto stderr\nno newline at the end"
                   "from eval\nfrom call\n">>, Text).

%% A group leader that keeps what it is asked to write.
collect(Acc) ->
    receive
        {io_request, From, ReplyAs, {put_chars, unicode, Chars}} ->
            From ! {io_reply, ReplyAs, ok},
            collect([Acc, Chars]);
        {lines, To} ->
            To ! {lines, iolist_to_binary(Acc)}
    end.

piped_node() ->
    Ebin = filename:dirname(code:which(py)),
    Erl = filename:join([code:root_dir(), "bin", "erl"]),
    Eval = "application:ensure_all_started(py_channel), "
           "ok = py:exec(<<\"print(\\\"printed by Python\\\")\">>), halt().",
    %% Standard error too, so that a node that fails shows why in the assertion.
    Command = io_lib:format("~s -noshell -pa ~s -eval '~s' 2>&1 | cat", [Erl, Ebin, Eval]),
    ?assertEqual("printed by Python\n", os:cmd(lists:flatten(Command))).

logging_to_logger() ->
    ok = logger:add_handler(py_output_tests, ?MODULE, #{config => #{pid => self()}}),
    try
        ok = py:exec(<<"import logging\n"
                       "logging.getLogger('app.db').warning('disk %s', 'full')\n"
                       "logging.getLogger('app').error('failed')\n"
                       "logging.getLogger('app').critical('down')\n"
                       "logging.getLogger('app').info('not shown: the root level is WARNING')\n">>),
        ?assertEqual([{warning, <<"disk full">>, <<"app.db">>},
                      {error, <<"failed">>, <<"app">>},
                      {critical, <<"down">>, <<"app">>}],
                     [receive {logged, Level, Message, Name} -> {Level, Message, Name}
                      after 5000 -> missing
                      end || _ <- lists:seq(1, 3)]),
        receive {logged, _, _, _} = Extra -> ?assertEqual(nothing_more, Extra)
        after 200 -> ok
        end
    after
        logger:remove_handler(py_output_tests)
    end.

%% A logger handler that passes Python's records to the test process.
log(#{level := Level, msg := {Format, Args}, meta := #{python_logger := Name}},
    #{config := #{pid := Pid}}) ->
    Pid ! {logged, Level, iolist_to_binary(io_lib:format(Format, Args)), Name};
log(_Event, _Config) ->
    ok.

%% Python's output reaches Erlang (issue 11): print and sys.stdout/stderr
%% writes go to the caller's group leader, line by line; a piped node prints
%% them on its standard output.
-module(py_output_tests).

-include_lib("eunit/include/eunit.hrl").

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

output_test_() ->
    {setup, fun setup/0,
     [{"print reaches the caller's group leader, line by line", fun to_group_leader/0},
      {"a piped erl -noshell prints Python's output", fun piped_node/0}]}.

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
    Command = io_lib:format("~s -noshell -pa ~s -eval '~s' | cat", [Erl, Ebin, Eval]),
    ?assertEqual("printed by Python\n", os:cmd(lists:flatten(Command))).

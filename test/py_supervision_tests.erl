%% Supervising Python (issue 11): py:start_link/3,4 under links, monitors and
%% supervisors; py:last_traceback/0; unreceived exceptions logged with their
%% traceback. The Python side is test/python/py_supervised.py.
-module(py_supervision_tests).
-behaviour(supervisor).

-include_lib("eunit/include/eunit.hrl").

%% supervisor callback and logger handler callback
-export([init/1, log/2]).

-define(PYTHON_DIR, filename:join(filename:dirname(?FILE), "python")).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    Dir = unicode:characters_to_binary(?PYTHON_DIR),
    {ok, false} = py:eval(<<"d in __import__('sys').path or __import__('sys').path.insert(0, d) or False">>,
                          #{d => Dir}),
    ok.

supervision_test_() ->
    {setup, fun setup/0,
     [{"exits normal when the call returns, {python, Name, Message} when it raises",
       fun exit_reasons/0},
      {"options: kwargs; bad arguments are badarg in the caller", fun options/0},
      {"a killed process stops its Python", fun killed/0},
      {"a supervisor's shutdown stops the Python within the shutdown time", fun shutdown/0},
      {"the parent's exit, or a linked process's crash, stops the Python", fun linked_exits/0},
      {"a consumer killed mid-stream is restarted; nothing it did not take is lost",
       {timeout, 120, fun consumer_restarted/0}},
      {"last_traceback/0: the caller's own traceback, file and line", fun last_traceback/0},
      {"an exception nobody receives is logged at error level with its line",
       fun unreceived_logged/0}]}.

exit_reasons() ->
    ?assertEqual(normal, exit_of(py_supervised, answer, [], #{})),
    ?assertEqual({python, 'ValueError', <<"boom">>}, exit_of(py_supervised, fail, [<<"boom">>], #{})),
    ?assertEqual({python, 'ModuleNotFoundError', <<"No module named 'no_such_module'">>},
                 exit_of(no_such_module, f, [], #{})).

options() ->
    ?assertEqual({python, 'ValueError', <<"by keyword">>},
                 exit_of(py_supervised, fail, [], #{kwargs => #{message => <<"by keyword">>}})),
    %% '__main__' is the namespace of the new process in the context given.
    ?assertMatch({python, 'NameError', _}, exit_of('__main__', answer, [], #{context => py:context(2)})),
    [?assertError(badarg, py:start_link(M, F, A, O))
     || {M, F, A, O} <- [{1, f, [], #{}}, {m, "f", [], #{}}, {m, f, not_a_list, #{}},
                         {m, f, [], #{kwargs => [{a, 1}]}}, {m, f, [], #{context => 2}},
                         {m, f, [], #{timeout => 5}}]],
    ?assertError(function_clause, py:start_link(m, f, [], [])),
    %% Nothing started, nothing in the mailbox.
    receive Stray -> ?assertEqual(no_stray_message, Stray) after 100 -> ok end.

killed() ->
    {Pid, _} = start_spinning(),
    exit(Pid, kill),
    ?assertEqual(stopped, receive_watched()).

shutdown() ->
    {ok, Sup} = supervisor:start_link(?MODULE, {[spin_spec(self(), 10000)], 0}),
    unlink(Sup),
    ?assertEqual(spinning, receive_watched()),
    [{spin, Pid, worker, [py]}] = supervisor:which_children(Sup),
    Monitor = erlang:monitor(process, Pid),
    ok = supervisor:terminate_child(Sup, spin),
    %% Told `shutdown', not killed after the shutdown time: the Python stopped in time.
    ?assertEqual(shutdown, receive {'DOWN', Monitor, process, Pid, Reason} -> Reason end),
    ?assertEqual(stopped, receive_watched()),
    exit(Sup, shutdown).

linked_exits() ->
    %% The parent (the process that called start_link) exits.
    Self = self(),
    Parent = spawn(fun() ->
                           {ok, Pid} = py:start_link(py_supervised, spin, [Self]),
                           Self ! {started, Pid},
                           receive go_away -> exit(going_away) end
                   end),
    Pid = receive {started, P} -> P end,
    ?assertEqual(spinning, receive_watched()),
    Monitor = erlang:monitor(process, Pid),
    Parent ! go_away,
    ?assertEqual(going_away, receive {'DOWN', Monitor, process, Pid, Reason} -> Reason end),
    ?assertEqual(stopped, receive_watched()),
    %% Another linked process: a normal exit does not matter, a crash does.
    {Pid2, Helper} = start_spinning(),
    Monitor2 = erlang:monitor(process, Pid2),
    {Normal, NormalMonitor} = spawn_monitor(fun() -> link(Pid2) end),
    receive {'DOWN', NormalMonitor, process, Normal, normal} -> ok end,
    ?assert(is_process_alive(Pid2)),
    spawn(fun() -> link(Pid2), exit(crashed) end),
    ?assertEqual(crashed, receive {'DOWN', Monitor2, process, Pid2, Reason2} -> Reason2 end),
    ?assertEqual(stopped, receive_watched()),
    exit(Helper, kill).

consumer_restarted() ->
    Count = 10000,
    {ok, Ch} = py_channel:new(#{max_size => 4096}),
    %% The consumer spins 50 us after each term it handled: the producer runs ahead, and
    %% the kills land while terms are queued.
    Spec = #{id => forward,
             start => {py, start_link, [py_supervised, forward, [Ch, self(), 0.00005]]},
             restart => transient, shutdown => 5000},
    {ok, Sup} = supervisor:start_link(?MODULE, {[Spec], 5}),
    unlink(Sup),
    spawn_link(fun() -> [py_test_support:send_retrying(Ch, N) || N <- lists:seq(1, Count)] end),
    %% Kill the consumer twice while the stream runs: each time the supervisor starts
    %% another, which takes up the stream where the killed one left it.
    First = receive_terms(Count div 3),
    QueuedAtKill = kill_consumer(Sup, Ch),
    Second = receive_terms(Count div 3),
    _ = kill_consumer(Sup, Ch),
    Rest = receive_terms(Count - 2 * (Count div 3)),
    Received = First ++ Second ++ Rest,
    ?assertEqual(lists:seq(1, Count), lists:sort(Received)),
    ?assert(QueuedAtKill > 0),
    %% Once drained and closed, the last consumer returns (transient: not restarted).
    ok = py_channel:close(Ch),
    py_test_support:wait_until(fun() -> supervisor:which_children(Sup) =:=
                                            [{forward, undefined, worker, [py]}] end),
    receive Extra -> ?assertEqual(no_extra_term, Extra) after 200 -> ok end,
    exit(Sup, shutdown).

%% Kills the running consumer and waits for its successor; returns how many terms were
%% queued at the kill.
kill_consumer(Sup, Ch) ->
    [{forward, Pid, worker, [py]}] = supervisor:which_children(Sup),
    exit(Pid, kill),
    #{length := Queued} = py_channel:info(Ch),
    py_test_support:wait_until(fun() ->
                                       case supervisor:which_children(Sup) of
                                           [{forward, New, _, _}] -> is_pid(New) andalso New =/= Pid;
                                           _ -> false
                                       end
                               end),
    Queued.

receive_terms(0) -> [];
receive_terms(N) ->
    receive Term when is_integer(Term) -> [Term | receive_terms(N - 1)]
    after 30000 -> error({terms_missing, N})
    end.

last_traceback() ->
    Self = self(),
    %% A fresh process has none.
    spawn(fun() -> Self ! {fresh, py:last_traceback()} end),
    ?assertEqual(undefined, receive {fresh, T} -> T end),
    ?assertEqual({error, {'ValueError', <<"mine">>}}, py:call(py_supervised, fail, [<<"mine">>])),
    Traceback = py:last_traceback(),
    ?assertMatch(<<"Traceback (most recent call last):\n", _/binary>>, Traceback),
    ?assertMatch({match, _}, re:run(Traceback, fail_location())),
    ?assertMatch({match, _}, re:run(Traceback, "ValueError: mine\n$")),
    %% A success leaves it alone; the next failure, from spawn_call, replaces it.
    {ok, 42} = py:call(py_supervised, answer, []),
    ?assertEqual(Traceback, py:last_traceback()),
    Pending = py:spawn_call(py_supervised, fail, [<<"later">>]),
    {error, {'ValueError', <<"later">>}} = py:await(Pending),
    ?assertMatch({match, _}, re:run(py:last_traceback(), "ValueError: later")).

unreceived_logged() ->
    ok = logger:add_handler(?MODULE, ?MODULE, #{level => error, config => #{pid => self()}}),
    try
        %% A cast.
        ok = py:exec(<<"def cast_fails():\n    x = 1\n    raise KeyError('in a cast')\n">>),
        ok = py:cast('__main__', cast_fails, []),
        CastLog = captured_error("in a cast"),
        ?assertMatch({match, _}, re:run(CastLog, "File \"<erlang>\", line 3, in cast_fails")),
        %% A start_link process: its exit reason says what, the log says where.
        {python, 'ValueError', <<"linked">>} = exit_of(py_supervised, fail, [<<"linked">>], #{}),
        LinkedLog = captured_error("ValueError: linked"),
        ?assertMatch({match, _}, re:run(LinkedLog, fail_location()))
    after
        logger:remove_handler(?MODULE)
    end.

%% Helpers

%% How a traceback names the line of py_supervised.fail that raises.
fail_location() ->
    {ok, Source} = file:read_file(filename:join(?PYTHON_DIR, "py_supervised.py")),
    Lines = binary:split(Source, <<"\n">>, [global]),
    {Before, _} = lists:splitwith(fun(Line) -> binary:match(Line, <<"raise ValueError">>) =:= nomatch end,
                                  Lines),
    io_lib:format("py_supervised\\.py\", line ~B, in fail", [length(Before) + 1]).

%% The exit reason of a start_link process, seen by a parent that traps exits.
exit_of(Module, Function, Args, Options) ->
    Self = self(),
    spawn(fun() ->
                  process_flag(trap_exit, true),
                  {ok, Pid} = py:start_link(Module, Function, Args, Options),
                  receive {'EXIT', Pid, Reason} -> Self ! {linked_exit, Reason} end
          end),
    receive {linked_exit, Reason} -> Reason after 10000 -> error(no_exit) end.

%% A start_link process spinning in Python (started by a helper process that stays).
start_spinning() ->
    Self = self(),
    Helper = spawn(fun() ->
                           process_flag(trap_exit, true),
                           {ok, Pid} = py:start_link(py_supervised, spin, [Self]),
                           Self ! {started, Pid},
                           receive stop -> ok end
                   end),
    Pid = receive {started, P} -> P end,
    ?assertEqual(spinning, receive_watched()),
    {Pid, Helper}.

%% What py_supervised.spin tells its watcher: spinning, then stopped.
receive_watched() ->
    receive
        What when What =:= spinning; What =:= stopped -> What
    after 10000 -> error(nothing_from_python)
    end.

spin_spec(Watcher, Shutdown) ->
    #{id => spin, start => {py, start_link, [py_supervised, spin, [Watcher]]},
      restart => temporary, shutdown => Shutdown}.

init({Children, Intensity}) ->
    {ok, {#{strategy => one_for_one, intensity => Intensity, period => 10}, Children}}.

%% A logger handler passing error events of py_channel to the test process.
log(#{level := error, msg := Msg, meta := #{domain := [py_channel]}}, #{config := #{pid := Pid}}) ->
    Text = case Msg of
               {Format, Args} when is_list(Format) -> io_lib:format(Format, Args);
               {string, String} -> String;
               Other -> io_lib:format("~p", [Other])
           end,
    Pid ! {captured_error, unicode:characters_to_binary(Text)};
log(_, _) ->
    ok.

captured_error(Containing) ->
    receive
        {captured_error, Text} ->
            case binary:match(Text, list_to_binary(Containing)) of
                nomatch -> captured_error(Containing);
                _ -> Text
            end
    after 10000 -> error({no_error_logged, Containing})
    end.

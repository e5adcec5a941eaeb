%% EUnit suite for the embedded interpreter and the `py' API, driving the real
%% NIF and the real CPython.
-module(py_tests).

-include_lib("eunit/include/eunit.hrl").

-import(py_test_support, [wait_until/1]).

%% logger handler callback, to capture tracebacks
-export([log/2]).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    {ok, _} = py:start_contexts(),
    ok.

py_test_() ->
    {setup, fun setup/0,
     [{"eval, exec and call", fun basics/0},
      {"eval with locals, atom or binary names", fun eval_locals/0},
      {"call with kwargs, dotted names and __main__", fun call_forms/0},
      {"exceptions come back as {error, {Name, Message}}", fun exceptions/0},
      {"tracebacks are logged: debug when received, error when nobody does",
       fun traceback_logging/0},
      {"namespaces belong to the process and the context", fun namespaces/0},
      {"a namespace is freed when its process exits", fun namespace_freed/0},
      {"Channel, ChannelClosed and reply need no import, in every namespace",
       fun channel_names_without_import/0},
      {"a module not imported yet, or gone from sys.modules, is imported",
       fun modules_imported_when_needed/0},
      {"a call submitted timed answers with the time of each stage (bench)",
       fun timed_stages/0},
      {"a job's handle says once a worker has begun it", fun job_started/0},
      {"an answer finished while its caller looks is kept in the handle, else sent: once",
       fun answer_polled/0},
      {"a caller that looks at once has its answer kept from the submit on",
       fun answer_kept_from_submit/0},
      {"a look for an answer stays in one NIF call, charged by the time it took",
       fun answer_looked_for/0},
      {timeout, 30, {"a job's large inputs are let go once it is over",
                     fun large_inputs_let_go/0}},
      {timeout, 30, {"a kept answer and its inputs go with a caller killed before or as it looks",
                     fun kept_for_a_killed_caller/0}},
      {timeout, 60, {"a kept answer's caller lets go of few inputs only: no long schedule",
                     fun many_inputs_let_go_by_the_worker/0}},
      {"a call waited for at once leaves nothing on its caller's binary heap",
       fun call_leaves_no_resource/0},
      {"a call given up while it runs keeps its own handle: the next calls get theirs",
       fun given_up_call_keeps_its_handle/0},
      {"spawn_call and await", fun spawn_call_await/0},
      {"await timeout discards the late answer", fun await_timeout/0},
      {"cast runs without an answer", fun cast_runs/0},
      {"register_function and erlang.call", fun callbacks/0},
      {"a callback that calls Python again does not deadlock", fun reentrant_callback/0},
      {"a failing or missing callback raises in Python", fun callback_errors/0},
      {"erlang.send to a live and a dead process", fun python_send/0},
      {"version and contexts", fun version_and_contexts/0},
      {"bad arguments are badarg", fun bad_arguments/0},
      {timeout, 60, {"no scheduler is blocked while Python sleeps or computes",
                     fun no_long_schedules/0}},
      {timeout, 60, {"a caller that looks long for its answer stays off a NIF call: "
                     "no long schedule", fun long_look_not_one_nif_call/0}},
      {timeout, 60, {"a long-running call never starves short ones",
                     fun long_call_does_not_starve/0}},
      {timeout, 60, {"a call made while the last one's result is finalized starts at once",
                     fun call_during_finalizer/0}},
      {timeout, 60, {"200 concurrent callers each get their own answer",
                     fun concurrent_callers/0}},
      {timeout, 60, {"the VM stops cleanly while Python threads are busy",
                     fun stop_while_busy/0}}]}.

%% A worker that answered still runs the result's finalizers, which may wait: until they
%% are done, the next call (which a caller makes as soon as it has the answer) must not
%% be queued for that worker. Here the finalizer waits for that very next call.
call_during_finalizer() ->
    ok = py:exec(<<"
import threading
finalized = threading.Event()
class Lingers(int):
    def __del__(self):
        finalized.wait(10)
def lingering():
    return Lingers(7)
def lingering_in_dict():
    return {'n': Lingers(7)}
">>),
    %% Kept encoded for the caller, and sent as a message (a dict).
    [begin
         ?assertEqual({ok, Answer}, py:call('__main__', Function, [])),
         ?assertEqual({ok, none}, py:eval(<<"finalized.set()">>, #{}, 2000)),
         ok = py:exec(<<"finalized.clear()">>)
     end || {Function, Answer} <- [{lingering, 7}, {lingering_in_dict, #{<<"n">> => 7}}],
            _ <- lists:seq(1, 10)].

basics() ->
    ?assertEqual({ok, 3}, py:eval(<<"1 + 2">>)),
    ?assertEqual({ok, 3}, py:eval("1 + 2")),
    ?assertEqual({ok, 4.0}, py:call(math, sqrt, [16])),
    ?assertEqual({ok, 4.0}, py:call(<<"math">>, <<"sqrt">>, [16])),
    ?assertEqual(ok, py:exec(<<"import math\nvalue = math.factorial(20)\n">>)),
    ?assertEqual({ok, 2432902008176640000}, py:eval(<<"value">>)).

eval_locals() ->
    ?assertEqual({ok, 100}, py:eval(<<"x * y">>, #{x => 10, y => 10})),
    ?assertEqual({ok, 100}, py:eval(<<"x * y">>, #{<<"x">> => 10, <<"y">> => 10})),
    ?assertEqual({ok, [2, 4, 6]},
                 py:eval(<<"list(map(lambda v, m=m: v * m, items))">>,
                         #{items => [1, 2, 3], m => 2})),
    ?assertEqual({ok, 7}, py:eval(<<"x + 2">>, #{x => 5}, 5000)).

call_forms() ->
    ?assertEqual({ok, <<"{\n  \"a\": 1\n}">>},
                 py:call(json, dumps, [#{<<"a">> => 1}], #{indent => 2})),
    ?assertEqual({ok, <<"a/b">>}, py:call(os, 'path.join', [<<"a">>, <<"b">>])),
    ok = py:exec(<<"def double(x):\n    return 2 * x\n">>),
    ?assertEqual({ok, 8}, py:call('__main__', double, [4])),
    ?assertEqual({ok, 9}, py:call(builtins, max, [[3, 9, 1]], #{}, 5000)),
    ?assertMatch({error, {'ModuleNotFoundError', _}}, py:call(no_such_module, f, [])),
    ?assertMatch({error, {'AttributeError', _}}, py:call(math, no_such_function, [])),
    ?assertMatch({error, {'NameError', _}}, py:call('__main__', undefined_here, [])).

exceptions() ->
    ?assertMatch({error, {'ZeroDivisionError', <<"division by zero">>}},
                 py:eval(<<"1/0">>)),
    ?assertMatch({error, {'SyntaxError', _}}, py:exec(<<"def (">>)),
    ?assertMatch({error, {'ValueError', <<"boom">>}},
                 py:exec(<<"raise ValueError('boom')">>)),
    ok = py:exec(<<"class Custom(Exception):\n    pass\n">>),
    ?assertMatch({error, {'Custom', <<"mine">>}}, py:exec(<<"raise Custom('mine')">>)),
    %% The interpreter is fine afterwards.
    ?assertEqual({ok, 2}, py:eval(<<"1 + 1">>)).

traceback_logging() ->
    ok = logger:add_handler(py_tests_capture, ?MODULE,
                            #{level => all, config => #{pid => self()}}),
    OldLevel = maps:get(level, logger:get_primary_config()),
    ok = logger:set_primary_config(level, all),
    try
        {error, {'ZeroDivisionError', _}} = py:eval(<<"1/0">>),
        {Level1, Text1} = captured_log(),
        ?assertEqual(debug, Level1),
        ?assertMatch({match, _}, re:run(Text1, "Traceback.*ZeroDivisionError", [dotall])),
        ok = py:cast(json, loads, [<<"{not json">>]),
        {Level2, Text2} = captured_log(),
        ?assertEqual(error, Level2),
        ?assertMatch({match, _}, re:run(Text2, "JSONDecodeError"))
    after
        logger:set_primary_config(level, OldLevel),
        logger:remove_handler(py_tests_capture)
    end.

log(#{level := Level, msg := Msg, meta := Meta}, #{config := #{pid := Pid}}) ->
    case Meta of
        #{domain := [py_channel]} ->
            Text = case Msg of
                       {Format, Args} when is_list(Format) -> io_lib:format(Format, Args);
                       {string, String} -> String;
                       Other -> io_lib:format("~p", [Other])
                   end,
            Pid ! {captured_log, Level, unicode:characters_to_binary(Text)};
        _ ->
            ok
    end.

captured_log() ->
    receive {captured_log, Level, Text} -> {Level, Text}
    after 5000 -> error(no_log_event)
    end.

namespaces() ->
    ok = py:exec(<<"shared = 'mine'">>),
    ?assertEqual({ok, <<"mine">>}, py:eval(<<"shared">>)),
    %% Another process does not see it.
    Parent = self(),
    spawn_link(fun() -> Parent ! {other, py:eval(<<"shared">>)} end),
    receive {other, Result} -> ?assertMatch({error, {'NameError', _}}, Result) end,
    %% Nor does another context of the same process.
    ?assertMatch({error, {'NameError', _}}, py:eval(py:context(2), <<"shared">>)),
    ok = py:exec(py:context(2), <<"shared = 'two'">>),
    ?assertEqual({ok, <<"two">>}, py:eval(py:context(2), <<"shared">>)),
    ?assertEqual({ok, <<"mine">>}, py:eval(<<"shared">>)).

namespace_freed() ->
    Count = <<"(__import__('gc').collect(), sum(1 for o in __import__('gc').get_objects()"
              " if type(o).__name__ == 'OnlyInThatNamespace'))[1]">>,
    Parent = self(),
    {Pid, Ref} = spawn_monitor(
                   fun() ->
                           ok = py:exec(<<"class OnlyInThatNamespace:\n    pass\n"
                                          "marker = OnlyInThatNamespace()\n">>),
                           Parent ! defined,
                           receive exit -> ok end
                   end),
    receive defined -> ok end,
    ?assertEqual({ok, 1}, py:eval(Count)),
    Pid ! exit,
    receive {'DOWN', Ref, process, Pid, normal} -> ok end,
    %% The namespace went with the process's dictionary; Python frees it the
    %% next time a worker runs.
    wait_until(fun() -> py:eval(Count) =:= {ok, 0} end).

%% The Python source the Elixir test (test/py_channel_test.exs) and the Gleam
%% test run too: the names come from the namespace set-up, not from a wrapper.
channel_names_without_import() ->
    Serve = <<"def serve(ref):\n"
              "    for sender, value in Channel(ref):\n"
              "        reply(sender, ('doubled', 2 * value))\n"
              "    try:\n"
              "        Channel(ref).receive(0)\n"
              "    except ChannelClosed:\n"
              "        return 'closed'\n">>,
    Parent = self(),
    %% A fresh process: its namespace is new, nothing imported by anyone.
    spawn_link(fun() -> Parent ! {fresh, serve_through_python(py:context(), Serve)} end),
    receive {fresh, Fresh} -> ?assertEqual({ok, <<"closed">>, [2, 4, 6]}, Fresh)
    after 15000 -> error(no_answer)
    end,
    %% A context's namespace too.
    ?assertEqual({ok, <<"closed">>, [2, 4, 6]}, serve_through_python(py:context(3), Serve)),
    ?assertEqual({ok, true},
                 py:eval(<<"Channel is __import__('erlang.channel').channel.Channel and "
                           "ChannelClosed is __import__('erlang').ChannelClosed and "
                           "reply is __import__('erlang.channel').channel.reply">>)).

serve_through_python(Context, Serve) ->
    ok = py:exec(Context, Serve),
    {ok, Ch} = py_channel:new(),
    Pending = py:spawn_call(Context, '__main__', serve, [Ch], #{}),
    [ok = py_channel:send(Ch, {self(), N}) || N <- [1, 2, 3]],
    ok = py_channel:close(Ch),
    %% serve/1 returns once it has replied to all three.
    case py:await(Pending, 10000) of
        {ok, Result} ->
            {ok, Result, [receive {<<"doubled">>, V} -> V after 1000 -> no_reply end
                          || _ <- [1, 2, 3]]};
        Error ->
            Error
    end.

modules_imported_when_needed() ->
    %% Not imported yet, whatever ran before in this interpreter.
    ok = py:exec(<<"import sys; sys.modules.pop('colorsys', None)">>),
    {ok, false} = py:eval(<<"'colorsys' in __import__('sys').modules">>),
    ?assertEqual({ok, {0.0, 0.0, 1.0}}, py:call(colorsys, rgb_to_hsv, [1.0, 1.0, 1.0])),
    {ok, true} = py:eval(<<"'colorsys' in __import__('sys').modules">>),
    ok = py:exec(<<"import sys; del sys.modules['colorsys']">>),
    ?assertEqual({ok, {0.0, 0.0, 1.0}}, py:call(colorsys, rgb_to_hsv, [1.0, 1.0, 1.0])),
    ?assertMatch({error, {'ModuleNotFoundError', _}}, py:call(no_such_module_here, f, [])),
    ?assertEqual({ok, <<"b">>}, py:call('os.path', basename, [<<"a/b">>])),
    %% Looked up at every call: a function replaced, then its module, are what the next
    %% call finds (workers keep the names and the modules they found imported).
    ok = py:exec(<<"import sys, types\nm = types.ModuleType('swapped_mod')\nm.f = lambda: 1\n"
                   "sys.modules['swapped_mod'] = m\n">>),
    ?assertEqual([{ok, 1} || _ <- lists:seq(1, 20)], [py:call(swapped_mod, f, []) || _ <- lists:seq(1, 20)]),
    ok = py:exec(<<"sys.modules['swapped_mod'].f = lambda: 2">>),
    ?assertEqual({ok, 2}, py:call(swapped_mod, f, [])),
    ok = py:exec(<<"m2 = types.ModuleType('swapped_mod')\nm2.f = lambda: 3\n"
                   "sys.modules['swapped_mod'] = m2\n">>),
    ?assertEqual([{ok, 3} || _ <- lists:seq(1, 20)], [py:call(swapped_mod, f, []) || _ <- lists:seq(1, 20)]),
    ok = py:exec(<<"del sys.modules['swapped_mod']">>),
    ?assertMatch({error, {'ModuleNotFoundError', _}}, py:call(swapped_mod, f, [])),
    %% Names of characters beyond Latin-1, as atoms and as binaries.
    ok = py:exec(<<"def \x{444}(x):\n    return x + 1\n"/utf8>>),
    ?assertEqual({ok, 2}, py:call('__main__', '\x{444}', [1])),
    ?assertEqual({ok, 2}, py:call('__main__', <<"\x{444}"/utf8>>, [1])),
    ?assertMatch({error, {'TypeError', _}}, py:call('__main__', <<255>>, [1])).

%% `make bench' breaks py:call down with the NIF's own clock (`timed').
timed_stages() ->
    Ref = make_ref(),
    Namespace = py_channel_nif:py_namespace_new(),
    Handle = py_channel_nif:py_call(Ref, Namespace, group_leader(), math, sqrt, [16], #{},
                                    timed),
    %% A timed job's caller looks for it from the submit on; this one stops at once, and the
    %% answer is sent (or, if it came first, handed over).
    {Result, Stages} =
        case py_channel_nif:py_stop_polling(Handle) of
            not_yet -> receive {py_timed, Ref, R, S} -> {R, S} after 10000 -> error(no_answer) end;
            {py_timed, R, S} -> {R, S}
        end,
    ?assertEqual({ok, 4.0}, Result),
    ?assertEqual([<<"submitted">>, <<"started">>, <<"gil">>, <<"arguments">>,
                  <<"lookup">>, <<"call">>, <<"result">>],
                 [Stage || {Stage, _} <- Stages]),
    Times = [Ns || {_, Ns} <- Stages],
    ?assertEqual(Times, lists:sort(Times)),
    ?assertError(badarg, py_channel_nif:py_call(make_ref(), Namespace, group_leader(), math,
                                                sqrt, [16], #{}, sometimes)),
    %% Looked for: kept encoded for the caller, stages and all.
    {{ok, 4.0}, CallStages} = py:timed_call(math, sqrt, [16]),
    ?assertMatch([<<"submitted">>, <<"started">>, _, _, _, _, <<"result">>, <<"answered">>],
                 [Stage || {Stage, _} <- CallStages]),
    {{ok, 42}, EvalStages} = py:timed_eval(<<"2 * 21">>),
    ?assertEqual([<<"submitted">>, <<"started">>, <<"gil">>, <<"arguments">>, <<"lookup">>,
                  <<"call">>, <<"result">>, <<"answered">>],
                 [Stage || {Stage, _} <- EvalStages]),
    ?assertError(badarg, py_channel_nif:py_eval(make_ref(), Namespace, group_leader(),
                                                <<"1">>, #{}, sometimes)).

%% What a caller looking for a short call's answer asks (py:take_answer/3).
job_started() ->
    Namespace = py_channel_nif:py_namespace_new(),
    Ref = make_ref(),
    Handle = py_channel_nif:py_eval(Ref, Namespace, group_leader(),
                                    <<"__import__('time').sleep(0.2)">>, #{}, true),
    wait_until(fun() -> py_channel_nif:py_started(Handle) end),
    receive {py_response, Ref, {ok, none}} -> ok after 10000 -> error(no_answer) end,
    ?assert(py_channel_nif:py_started(Handle)),
    ?assertError(badarg, py_channel_nif:py_started(Namespace)).

answer_polled() ->
    Namespace = py_channel_nif:py_namespace_new(),
    Eval = fun(Code) -> submit_eval(Namespace, Code) end,
    %% Looked for while it runs: the answer is kept for the caller, no message comes.
    %% A small plain value is kept encoded, without the reference (the caller has it).
    {_Ref1, Handle1} = Eval(<<"__import__('time').sleep(0.05) or 6 * 7">>),
    ?assertEqual(not_yet, py_channel_nif:py_poll(Handle1)),
    ?assertEqual({py_response, {ok, 42}}, poll_until_answer(Handle1)),
    ?assertError(badarg, py_channel_nif:py_poll(Handle1)),
    %% Any other answer is kept as the message it would have been.
    {Ref6, Handle6} = Eval(<<"__import__('time').sleep(0.05) or {'a': [1, 2.5]}">>),
    ?assertEqual(not_yet, py_channel_nif:py_poll(Handle6)),
    ?assertEqual({py_response, Ref6, {ok, #{<<"a">> => [1, 2.5]}}}, poll_until_answer(Handle6)),
    {Ref7, Handle7} = Eval(<<"__import__('time').sleep(0.05) or 1 / 0">>),
    ?assertEqual(not_yet, py_channel_nif:py_poll(Handle7)),
    ?assertMatch({py_response, Ref7, {error, {'ZeroDivisionError', _}}, _Traceback},
                 poll_until_answer(Handle7)),
    %% Kept encoded across every kind of small plain data, through py:call.
    Values = [none, true, -1 bsl 62, 2.5, <<"text">>, [1, [2, {3, <<"x">>}]], {}, [],
              binary:copy(<<"y">>, 90)],
    ?assertEqual([{ok, V} || V <- Values],
                 [py:eval(<<"v">>, #{v => V}) || V <- Values]),
    %% The looking stopped before the answer: it comes as a message.
    {Ref2, Handle2} = Eval(<<"__import__('time').sleep(0.05) or 'sent'">>),
    ?assertEqual(not_yet, py_channel_nif:py_poll(Handle2)),
    ?assertEqual(not_yet, py_channel_nif:py_stop_polling(Handle2)),
    ?assertEqual({ok, <<"sent">>}, receive {py_response, Ref2, R2} -> R2 after 5000 -> none end),
    ?assertEqual(sent, py_channel_nif:py_poll(Handle2)),
    %% Never looked for: sent, and a look afterwards says so.
    {Ref3, Handle3} = Eval(<<"1 + 1">>),
    ?assertEqual({ok, 2}, receive {py_response, Ref3, R3} -> R3 after 5000 -> none end),
    ?assertEqual(sent, py_channel_nif:py_poll(Handle3)),
    %% Kept while looking, then the looking stops: the kept answer is handed over.
    {_Ref4, Handle4} = Eval(<<"'kept'">>),
    ?assertEqual(not_yet, py_channel_nif:py_poll(Handle4)),
    wait_until(fun() -> py_channel_nif:py_started(Handle4) end),
    timer:sleep(50),
    ?assertEqual({py_response, {ok, <<"kept">>}}, py_channel_nif:py_stop_polling(Handle4)),
    %% A large answer is sent even while looked for: the caller would copy it on its
    %% scheduler.
    {Ref5, Handle5} = Eval(<<"__import__('time').sleep(0.05) or list(range(100000))">>),
    ?assertEqual(not_yet, py_channel_nif:py_poll(Handle5)),
    ?assertEqual(sent, poll_until_answer(Handle5)),
    ?assertEqual({ok, lists:seq(0, 99999)},
                 receive {py_response, Ref5, R5} -> R5 after 5000 -> none end),
    %% Thousands of short calls, each looked for: every answer once, none in the mailbox.
    ?assertEqual([{ok, N * N} || N <- lists:seq(1, 3000)],
                 [py:call(operator, mul, [N, N]) || N <- lists:seq(1, 3000)]),
    ?assertError(badarg, py_channel_nif:py_poll(Namespace)),
    ?assertEqual([], flush()).

flush() ->
    receive Message -> [Message | flush()] after 0 -> [] end.

%% `Code' submitted to be evaluated in `Namespace', its answer looked for: its reference and
%% its job's handle.
submit_eval(Namespace, Code) ->
    Ref = make_ref(),
    {Ref, py_channel_nif:py_eval(Ref, Namespace, group_leader(), Code, #{}, true)}.

%% py:call, eval and exec look for their answer as soon as the submit returns: the job is
%% looked for from the submit on, so an answer that comes first (its caller's time slice
%% ended in between) is kept for it, not sent from the worker's thread.
answer_kept_from_submit() ->
    Namespace = py_channel_nif:py_namespace_new(),
    GroupLeader = group_leader(),
    Done = fun(Handle) ->
                   wait_until(fun() -> py_channel_nif:py_started(Handle) end),
                   timer:sleep(50)
           end,
    Ref1 = make_ref(),
    Handle1 = py_channel_nif:py_eval(Ref1, Namespace, GroupLeader, <<"6 * 7">>, #{}, look),
    Done(Handle1),
    ?assertEqual({py_response, {ok, 42}}, py_channel_nif:py_poll(Handle1)),
    Ref2 = make_ref(),
    Handle2 = py_channel_nif:py_call(Ref2, Namespace, GroupLeader, math, sqrt, [16], #{}, look),
    Done(Handle2),
    ?assertEqual({py_response, {ok, 4.0}}, py_channel_nif:py_look(Handle2, 5, 20)),
    %% An exec is always looked for at once; its answer is kept as its message.
    Ref3 = make_ref(),
    Handle3 = py_channel_nif:py_exec(Ref3, Namespace, GroupLeader, <<"x = 1">>),
    Done(Handle3),
    ?assertEqual({py_response, Ref3, ok}, py_channel_nif:py_stop_polling(Handle3)),
    %% Its caller stops looking before the answer: the answer is sent.
    Ref4 = make_ref(),
    Handle4 = py_channel_nif:py_eval(Ref4, Namespace, GroupLeader,
                                     <<"__import__('time').sleep(0.05) or 'sent'">>, #{}, look),
    ?assertEqual(not_yet, py_channel_nif:py_stop_polling(Handle4)),
    ?assertEqual({ok, <<"sent">>}, receive {py_response, Ref4, R4} -> R4 after 5000 -> none end),
    %% A spawn_call's caller may look much later (py:await/2): its answer is sent.
    Ref5 = make_ref(),
    Handle5 = py_channel_nif:py_eval(Ref5, Namespace, GroupLeader, <<"5">>, #{}, true),
    ?assertEqual({ok, 5}, receive {py_response, Ref5, R5} -> R5 after 5000 -> none end),
    ?assertEqual(sent, py_channel_nif:py_poll(Handle5)),
    ?assertEqual([], flush()).

%% py_look/3 looks as py_poll/1 does, again and again inside the one call: it stops when
%% the answer is there, when no worker has begun the job in time, or when its time is up.
answer_looked_for() ->
    Namespace = py_channel_nif:py_namespace_new(),
    Eval = fun(Code) -> submit_eval(Namespace, Code) end,
    %% The answer comes while it looks (a generous 2 s, for a loaded machine); the job
    %% sleeps so that it cannot be over (and sent) before the look begins.
    {_Ref1, Handle1} = Eval(<<"__import__('time').sleep(0.02) or 6 * 7">>),
    ?assertEqual({py_response, {ok, 42}}, look_until_answer(Handle1, 2000)),
    %% Its time is up first: not_yet, after at least that time, and then the answer is
    %% kept for a later look or sent once the caller stops looking, as with py_poll/1.
    {Ref2, Handle2} = Eval(<<"__import__('time').sleep(0.1) or 'late'">>),
    wait_until(fun() -> py_channel_nif:py_started(Handle2) end),
    %% A fresh time slice, all of which the look below may be charged.
    erlang:yield(),
    {reductions, Before} = process_info(self(), reductions),
    T0 = erlang:monotonic_time(microsecond),
    %% One call looks for a millisecond at most, however long it is asked to.
    ?assertEqual(not_yet, py_channel_nif:py_look(Handle2, 0, 20000)),
    Looked = erlang:monotonic_time(microsecond) - T0,
    {reductions, After} = process_info(self(), reductions),
    ?assert(Looked >= 1000 andalso Looked < 20000),
    %% Charged by the time it took: a millisecond is a whole time slice (4000
    %% reductions), not the one reduction of a NIF call.
    ?assert(After - Before >= 3000),
    ?assertEqual(not_yet, py_channel_nif:py_stop_polling(Handle2)),
    ?assertEqual({ok, <<"late">>}, receive {py_response, Ref2, R2} -> R2 after 5000 -> none end),
    ?assertEqual(sent, py_channel_nif:py_look(Handle2, 1000, 1000)),
    ?assertError(badarg, py_channel_nif:py_look(Namespace, 10, 10)),
    ?assertError(badarg, py_channel_nif:py_look(Handle1, -1, 10)),
    %% A short call's look is a NIF call or two: a loop of polls cost the caller a
    %% reduction or two per turn (41 a look, median, against 6, in a quiet node), and a
    %% process that uses up its time slice sooner meets the scheduler's deferred work
    %% sooner.
    Looks = lists:sort([begin
                            Ref = make_ref(),
                            Handle = py_channel_nif:py_call(Ref, Namespace, group_leader(),
                                                            math, sqrt, [16], #{}, true),
                            {reductions, R0} = process_info(self(), reductions),
                            Found = py_answer:look({job, Handle}, 5000),
                            {reductions, R1} = process_info(self(), reductions),
                            %% Kept encoded, or (when the look began as it answered) as
                            %% its message, or sent once the look stopped.
                            case Found of
                                {message, {py_response, {ok, 4.0}}} -> ok;
                                {message, {py_response, Ref, {ok, 4.0}}} -> ok;
                                'receive' ->
                                    receive {py_response, Ref, {ok, 4.0}} -> ok
                                    after 5000 -> error(no_answer)
                                    end
                            end,
                            R1 - R0
                        end || _ <- lists:seq(1, 2001)]),
    ?assertMatch({median, Median} when Median < 30, {median, lists:nth(1001, Looks)}),
    ?assertEqual([], flush()).

%% Looks (py_look/3, a millisecond a call) for up to `Millis'.
look_until_answer(Handle, 0) ->
    py_channel_nif:py_look(Handle, 1000, 1000);
look_until_answer(Handle, Millis) ->
    case py_channel_nif:py_look(Handle, 1000, 1000) of
        not_yet -> look_until_answer(Handle, Millis - 1);
        Found -> Found
    end.

poll_until_answer(Handle) ->
    case py_channel_nif:py_poll(Handle) of
        not_yet -> timer:sleep(1), poll_until_answer(Handle);
        Message -> Message
    end.

%% The env a job's inputs are copied into goes back to a pool, cleared: by the caller that
%% takes an answer kept for it, else by the worker. An env kept uncleared would keep a large
%% binary alive, or the whole binary a few bytes of it are part of.
large_inputs_let_go() ->
    Size = 32 * 1024 * 1024,
    erlang:garbage_collect(),
    Before = erlang:memory(binary),
    %% Looked for until it answers, so that the answer is kept in the handle (a slow job's
    %% answer is otherwise sent, from an env handed over with it).
    {Caller, Watch} =
        spawn_monitor(fun() ->
                              Large = binary:copy(<<7>>, Size),
                              Namespace = py_channel_nif:py_namespace_new(),
                              Handle = py_channel_nif:py_eval(make_ref(), Namespace,
                                                              group_leader(), <<"len(large)">>,
                                                              #{large => Large}, true),
                              {py_response, {ok, Size}} = poll_until_answer(Handle),
                              %% A few bytes of it, which keep the whole binary alive.
                              Slice = binary:part(Large, 1000, 10),
                              Handle2 = py_channel_nif:py_eval(make_ref(), Namespace,
                                                               group_leader(), <<"len(s)">>,
                                                               #{s => Slice}, true),
                              {py_response, {ok, 10}} = poll_until_answer(Handle2)
                      end),
    receive {'DOWN', Watch, process, Caller, Reason} -> ?assertEqual(normal, Reason) end,
    wait_until(fun() -> erlang:memory(binary) < Before + Size div 2 end),
    %% Small inputs in a reused env: each job sees its own.
    ?assertEqual([{ok, N + 1} || N <- lists:seq(1, 200)],
                 [py:call(operator, add, [N, 1]) || N <- lists:seq(1, 200)]).

%% A caller killed while it looks never takes its answer: the answer is kept for it all
%% the same (nobody told the job), with the job's env; both go with the handle.
kept_for_a_killed_caller() ->
    %% Killed while it looks, and killed between the submit and its first look (a job
    %% looked for from its submit on keeps its answer for it all the same).
    killed_caller_lets_go(true),
    killed_caller_lets_go(look).

killed_caller_lets_go(Reply) ->
    Size = 32 * 1024 * 1024,
    erlang:garbage_collect(),
    Before = erlang:memory(binary),
    %% The parent's namespace: the caller's death does not cancel the job.
    Namespace = py_channel_nif:py_namespace_new(),
    Parent = self(),
    Caller = spawn(fun() ->
                           Handle = py_channel_nif:py_eval(
                                      make_ref(), Namespace, group_leader(),
                                      <<"__import__('time').sleep(0.2) or len(large)">>,
                                      #{large => binary:copy(<<7>>, Size)}, Reply),
                           Reply =:= look orelse (not_yet = py_channel_nif:py_poll(Handle)),
                           Parent ! {looking, self()},
                           receive never -> ok end
                   end),
    receive {looking, Caller} -> ok end,
    exit(Caller, kill),
    %% The job keeps its answer and hands its env over, then goes; so does the handle.
    wait_until(fun() -> erlang:memory(binary) < Before + Size div 2 end),
    ?assertEqual([], flush()).

%% The caller that takes a kept answer lets the job's env go on its scheduler, where the
%% inputs were copied in, but only when they are few terms: letting go of 200,000 binaries
%% there took 7 ms, inside the NIF call that took the answer.
many_inputs_let_go_by_the_worker() ->
    Many = fun() -> [binary:copy(<<I:32>>, 17) || I <- lists:seq(1, 200000)] end,
    taken_without_long_schedule(<<"len(l)">>, fun() -> #{l => Many()} end, 200000),
    %% A fun holds what it captured, which no one can count from a NIF.
    taken_without_long_schedule(<<"f is None">>,
                                fun() -> Bins = Many(), #{f => fun() -> Bins end} end, false).

%% A job evaluating `Code' with the locals `MakeLocals()' made, looked for until its
%% answer is kept, then taken: the taking NIF call is no long schedule.
taken_without_long_schedule(Code, MakeLocals, Expected) ->
    Parent = self(),
    {Looker, Watch} =
        spawn_monitor(
          fun() ->
                  Namespace = py_channel_nif:py_namespace_new(),
                  Handle = py_channel_nif:py_eval(make_ref(), Namespace, group_leader(), Code,
                                                  MakeLocals(), true),
                  not_yet = py_channel_nif:py_poll(Handle),
                  %% The copy into the job's env took long too: scheduled out, and its
                  %% long schedule over, before the parent watches.
                  erlang:garbage_collect(),
                  timer:sleep(10),
                  Parent ! {submitted, self()},
                  receive watched -> ok end,
                  %% Done by then: the answer is taken in one call, as a caller that kept
                  %% looking would take it.
                  timer:sleep(1500),
                  {py_response, {ok, Expected}} = poll_until_answer(Handle),
                  timer:sleep(10)
          end),
    receive {submitted, Looker} -> ok end,
    erlang:system_monitor(self(), [{long_schedule, 5}]),
    try
        Looker ! watched,
        receive {'DOWN', Watch, process, Looker, Reason} -> ?assertEqual(normal, Reason) end,
        receive {monitor, Looker, long_schedule, Info} -> ?assertEqual(no_long_schedule, Info)
        after 200 -> ok
        end
    after
        erlang:system_monitor(undefined)
    end,
    flush_long_schedules().

spawn_call_await() ->
    Pending = py:spawn_call(math, pow, [2, 10]),
    ?assertEqual({ok, 1024.0}, py:await(Pending)),
    Many = [py:spawn_call(operator, mul, [N, N]) || N <- lists:seq(1, 50)],
    ?assertEqual([{ok, N * N} || N <- lists:seq(1, 50)], [py:await(P) || P <- Many]),
    ?assertMatch({error, {'ZeroDivisionError', _}},
                 py:await(py:spawn_call(operator, truediv, [1, 0]), 5000)).

%% The handle of a call its caller waits for at once is held by the caller's namespace: a
%% resource per call would add to the caller's virtual binary heap (93 words each), and die
%% in its garbage collections, hundreds at a time. No collection runs here (a large heap),
%% so every resource made would still be counted.
call_leaves_no_resource() ->
    Parent = self(),
    Calls = 200,
    {Pid, Monitor} =
        spawn_opt(fun() ->
                          {ok, 4.0} = py:call(math, sqrt, [16]), % the namespace, made once
                          Before = py_test_support:binary_heap(),
                          Answers = [py:call(math, sqrt, [16]) || _ <- lists:seq(1, Calls)],
                          Evals = [py:eval(<<"6 * 7">>) || _ <- lists:seq(1, Calls)],
                          Parent ! {self(), Answers ++ Evals, Before, py_test_support:binary_heap()}
                  end,
                  [monitor, {min_heap_size, 1000000}, {min_bin_vheap_size, 10000000}]),
    receive
        {Pid, Answers, {WordsBefore, Collections}, {WordsAfter, CollectionsAfter}} ->
            ?assertEqual(lists:duplicate(Calls, {ok, 4.0}) ++ lists:duplicate(Calls, {ok, 42}),
                         Answers),
            %% Nothing was collected, so nothing made was uncounted.
            ?assertEqual(Collections, CollectionsAfter),
            ?assertEqual(WordsBefore, WordsAfter)
    end,
    receive {'DOWN', Monitor, process, Pid, normal} -> ok end.

%% The namespace holds the handle of the call its owner waits for; one given up still runs
%% with its own, and neither its late answer nor its cancel touches the calls after it.
given_up_call_keeps_its_handle() ->
    ok = py:exec(<<"import time\ngiven_up = []\n"
                   "def slow_then_note():\n"
                   "    try:\n        time.sleep(0.3)\n"
                   "    finally:\n        given_up.append('cleaned')\n"
                   "    return 'late'\n">>),
    ?assertEqual({error, timeout}, py:call('__main__', slow_then_note, [], #{}, 20)),
    ?assertEqual({ok, 4.0}, py:call(math, sqrt, [16])),
    ?assertEqual({ok, 42}, py:eval(<<"6 * 7">>)),
    timer:sleep(500),
    ?assertEqual({ok, [<<"cleaned">>]}, py:eval(<<"given_up">>)),
    ?assertEqual({ok, 3.0}, py:call(math, sqrt, [9])),
    receive Stray -> ?assertEqual(no_stray_message, Stray)
    after 0 -> ok
    end.

await_timeout() ->
    Pending = py:spawn_call(time, sleep, [0.3]),
    ?assertEqual({error, timeout}, py:await(Pending, 10)),
    timer:sleep(500),
    receive {py_response, _, _} = Late -> ?assertEqual(no_late_answer, Late)
    after 0 -> ok
    end,
    ?assertEqual({error, timeout}, py:eval(<<"__import__('time').sleep(0.3)">>, #{}, 10)).

cast_runs() ->
    ok = py:exec(<<"import builtins\nbuiltins.cast_marker = 0\n"
                   "def set_marker(value):\n    builtins.cast_marker = value\n">>),
    ok = py:cast('__main__', set_marker, [42]),
    wait_until(fun() -> py:eval(<<"__import__('builtins').cast_marker">>) =:= {ok, 42} end).

callbacks() ->
    ok = py:register_function(add, fun([A, B]) -> A + B end),
    ok = py:register_function(<<"mul3">>, fun(A, B, C) -> A * B * C end),
    ok = py:register_function(echo, lists, reverse),
    ?assertEqual({ok, 5}, py:eval(<<"__import__('erlang').call('add', 2, 3)">>)),
    ?assertEqual({ok, 24}, py:eval(<<"__import__('erlang').call('mul3', 2, 3, 4)">>)),
    ?assertEqual({ok, [3, 2, 1]}, py:eval(<<"__import__('erlang').call('echo', 1, 2, 3)">>)),
    %% From a Python thread of its own, too.
    ok = py:exec(<<"import threading, erlang\n"
                   "out = []\n"
                   "t = threading.Thread(target=lambda: out.append(erlang.call('add', 40, 2)))\n"
                   "t.start(); t.join()\n">>),
    ?assertEqual({ok, [42]}, py:eval(<<"out">>)),
    ok = py:unregister_function(add),
    ?assertMatch({error, {'CallError', _}},
                 py:eval(<<"__import__('erlang').call('add', 2, 3)">>)).

reentrant_callback() ->
    ok = py:exec(<<"def square(x):\n    return x * x\n">>),
    ok = py:register_function(square_via_python,
                              fun([X]) ->
                                      %% Runs in an Erlang process; calls Python again.
                                      {ok, Y} = py:eval(<<"x * x">>, #{x => X}),
                                      Y
                              end),
    ok = py:register_function(deeper,
                              fun([X]) ->
                                      {ok, Y} = py:eval(
                                                  <<"__import__('erlang').call("
                                                    "'square_via_python', x) + 1">>,
                                                  #{x => X}),
                                      Y
                              end),
    ?assertEqual({ok, 50},
                 py:eval(<<"__import__('erlang').call('square_via_python', 7) + 1">>)),
    ?assertEqual({ok, 17}, py:eval(<<"__import__('erlang').call('deeper', 4)">>)).

callback_errors() ->
    ok = py:register_function(crash, fun([_]) -> error(oops) end),
    ok = py:register_function(killed, fun([_]) -> exit(self(), kill) end),
    ?assertMatch({error, {'CallError', _}},
                 py:eval(<<"__import__('erlang').call('crash', 1)">>)),
    ?assertMatch({error, {'CallError', _}},
                 py:eval(<<"__import__('erlang').call('killed', 1)">>)),
    ?assertMatch({error, {'CallError', _}},
                 py:eval(<<"__import__('erlang').call('never_registered')">>)),
    ?assertMatch({error, {'TypeError', _}},
                 py:eval(<<"__import__('erlang').call('crash', object())">>)).

python_send() ->
    ?assertEqual({ok, none},
                 py:eval(<<"__import__('erlang').send(p, ('hi', [1, 2]))">>, #{p => self()})),
    receive Message -> ?assertEqual({<<"hi">>, [1, 2]}, Message)
    after 5000 -> error(no_message)
    end,
    Dead = spawn(fun() -> ok end),
    timer:sleep(50),
    ?assertMatch({error, {'ProcessError', _}},
                 py:eval(<<"__import__('erlang').send(p, 1)">>, #{p => Dead})),
    ?assertMatch({error, {'TypeError', _}},
                 py:eval(<<"__import__('erlang').send('not a pid', 1)">>)).

version_and_contexts() ->
    {ok, Version} = py:version(),
    ?assertMatch({match, _}, re:run(Version, "^3\\.1[0-9]")),
    {ok, Contexts} = py:start_contexts(3),
    ?assertEqual(3, length(Contexts)),
    ?assertEqual(lists:nth(2, Contexts), py:context(2)).

bad_arguments() ->
    ?assertError(badarg, py:call(math, sqrt, not_a_list)),
    ?assertEqual({error, {'TypeError', <<"the arguments of a call must be a proper list">>}},
                 py:call(math, sqrt, [16 | 2])),
    ?assertError(badarg, py:call(42, sqrt, [1])),
    ?assertError(badarg, py:call(math, sqrt, [1], not_a_map, 1000)),
    ?assertError(badarg, py:eval([16#110000])),
    ?assertError(function_clause, py:eval(<<"1">>, not_a_map)),
    ?assertMatch({error, {'ValueError', _}}, py:eval(<<"1", 0, "2">>)),
    ?assertError(function_clause, py:context(0)).

no_long_schedules() ->
    erlang:system_monitor(self(), [{long_schedule, 100}]),
    try
        Parent = self(),
        Sleepers = [spawn_link(fun() ->
                                       Parent ! {self(), py:eval(<<"__import__('time').sleep(0.5)">>)}
                               end) || _ <- lists:seq(1, 5)],
        Crunchers = [spawn_link(fun() ->
                                        Parent ! {self(), py:eval(<<"sum(i * i for i in range(2000000))">>)}
                                end) || _ <- lists:seq(1, 20)],
        [receive {P, R} -> ?assertEqual({ok, none}, R) end || P <- Sleepers],
        Expected = lists:sum([I * I || I <- lists:seq(0, 1999999)]),
        [receive {P, R} -> ?assertEqual({ok, Expected}, R) end || P <- Crunchers]
    after
        erlang:system_monitor(undefined)
    end,
    receive {monitor, _, long_schedule, Info} -> ?assertEqual(no_long_schedule, Info)
    after 0 -> ok
    end.

%% `await_spin' may be set high; the look is then made of NIF calls of at most a
%% millisecond, charged by their time, so the process is scheduled out as usual.
long_look_not_one_nif_call() ->
    ok = application:set_env(py_channel, await_spin, 100000),
    ok = py_answer:init_await_spin(),
    erlang:system_monitor(self(), [{long_schedule, 20}]),
    try
        %% In a process of its own: the monitoring process hears of others only.
        {Looker, Watch} =
            spawn_monitor(
              fun() ->
                      Namespace = py_channel_nif:py_namespace_new(),
                      Handle = py_channel_nif:py_eval(make_ref(), Namespace, group_leader(),
                                                      <<"__import__('time').sleep(0.06)">>,
                                                      #{}, true),
                      %% Begun: the look goes on until the answer, 60 ms later.
                      wait_until(fun() -> py_channel_nif:py_started(Handle) end),
                      {message, {py_response, {ok, none}}} =
                          py_answer:look({job, Handle}, 5000)
              end),
        receive {'DOWN', Watch, process, Looker, Reason} -> ?assertEqual(normal, Reason) end,
        receive {monitor, Looker, long_schedule, Info} -> ?assertEqual(no_long_schedule, Info)
        after 200 -> ok
        end
    after
        erlang:system_monitor(undefined),
        ok = application:unset_env(py_channel, await_spin),
        ok = py_answer:init_await_spin()
    end,
    flush_long_schedules().

flush_long_schedules() ->
    receive {monitor, _, long_schedule, _} -> flush_long_schedules() after 0 -> ok end.

long_call_does_not_starve() ->
    Blockers = [py:spawn_call(time, sleep, [3]) || _ <- lists:seq(1, 8)],
    T0 = erlang:monotonic_time(millisecond),
    ?assertEqual({ok, 2}, py:eval(<<"1 + 1">>)),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 2000),
    %% Each blocked call got a thread of its own.
    ?assert(maps:get(python_threads, py_channel:stats()) >= 9),
    [?assertEqual({ok, none}, py:await(B)) || B <- Blockers].

concurrent_callers() ->
    Parent = self(),
    Pids = [spawn_link(fun() ->
                               Result = case N rem 10 of
                                            0 -> py:eval(<<"n / 0">>, #{n => N});
                                            _ -> py:eval(<<"n * 3 + 1">>, #{n => N})
                                        end,
                               Parent ! {self(), N, Result}
                       end) || N <- lists:seq(1, 200)],
    lists:foreach(
      fun(Pid) ->
              receive
                  {Pid, N, Result} when N rem 10 =:= 0 ->
                      ?assertMatch({error, {'ZeroDivisionError', _}}, Result);
                  {Pid, N, Result} ->
                      ?assertEqual({ok, N * 3 + 1}, Result)
              end
      end, Pids).

stop_while_busy() ->
    Ebin = filename:dirname(code:which(py)),
    Script = "application:ensure_all_started(py_channel),"
             "[py:spawn_call(time, sleep, [30]) || _ <- lists:seq(1, 4)],"
             "[spawn(fun() -> py:eval(<<\"sum(range(10**9))\">>) end) || _ <- lists:seq(1, 2)],"
             "{ok, Ch} = py_channel:new(),"
             "py:spawn_call(builtins, print, [Ch]),"
             "timer:sleep(500), init:stop().",
    Command = io_lib:format("ERL_LIBS=~ts timeout 60 erl -noshell -pa ~ts -eval '~ts'; echo exit=$?",
                            [elixir_libs(), Ebin, Script]),
    T0 = erlang:monotonic_time(millisecond),
    Output = os:cmd(lists:flatten(Command)),
    ?assertMatch({match, _}, re:run(Output, "exit=0")),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 30000).

elixir_libs() ->
    case code:lib_dir(elixir) of
        {error, _} -> "";
        Dir -> filename:dirname(Dir)
    end.

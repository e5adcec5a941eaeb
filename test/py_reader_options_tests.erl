%% The Python reader's options for code written against erlang_python, and
%% the fields every language's `info' shares (issue 10).
-module(py_reader_options_tests).

-include_lib("eunit/include/eunit.hrl").

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

options_test_() ->
    {setup, fun setup/0,
     [{"try_receive(default=...) tells empty from a received none", fun try_receive_default/0},
      {"timeout_ms= waits in milliseconds", fun timeout_ms/0},
      {"Python's info has the fields of py_channel:info/1", fun info_fields/0},
      {"reply as erlang_python's: True, RuntimeError when the process is gone",
       fun reply_like_erlang_python/0},
      {"Channel, ChannelClosed and reply need no import", fun namespace_names/0}]}.

try_receive_default() ->
    {ok, Ch} = py_channel:new(),
    ok = py_channel:send(Ch, none),
    Source = <<"(Channel(ch).try_receive(default='empty'), "
               "Channel(ch).try_receive(default='empty'), Channel(ch).try_receive())">>,
    ?assertEqual({ok, {none, <<"empty">>, none}}, py:eval(Source, #{ch => Ch})).

timeout_ms() ->
    {ok, Ch} = py_channel:new(),
    ok = py:exec(<<"import time\n"
                   "def waited(ref, **options):\n"
                   "    started = time.monotonic()\n"
                   "    try:\n"
                   "        Channel(ref).receive(**options)\n"
                   "    except TimeoutError:\n"
                   "        return time.monotonic() - started\n">>),
    {ok, Seconds} = py:call('__main__', waited, [Ch], #{timeout_ms => 50}),
    ?assert(Seconds >= 0.05),
    ?assert(Seconds < 5),
    ?assertEqual({ok, []}, py:eval(<<"Channel(ch).receive_many(3, timeout_ms=10)">>, #{ch => Ch})),
    ?assertMatch({error, {'ValueError', <<"give timeout (seconds) or timeout_ms", _/binary>>}},
                 py:eval(<<"Channel(ch).receive(1, timeout_ms=10)">>, #{ch => Ch})),
    %% erlang_python's -1: for ever.
    ok = py:exec(<<"def wait_for_ever_ms(ref):\n"
                   "    return Channel(ref).receive(timeout_ms=-1)\n">>),
    Waiting = py:spawn_call('__main__', wait_for_ever_ms, [Ch]),
    timer:sleep(100),
    ok = py_channel:send(Ch, woken),
    ?assertEqual({ok, woken}, py:await(Waiting, 5000)).

reply_like_erlang_python() ->
    Dead = spawn(fun() -> ok end),
    timer:sleep(50),
    ok = py:exec(<<"def reply_outcomes(live, dead):\n"
                   "    sent = reply(live, 'hi')\n"
                   "    try:\n"
                   "        reply(dead, 'hi')\n"
                   "    except RuntimeError as error:\n"
                   "        return (sent, type(error).__name__)\n">>),
    ?assertEqual({ok, {true, <<"ProcessError">>}},
                 py:call('__main__', reply_outcomes, [self(), Dead])),
    ?assertEqual(<<"hi">>, receive M -> M after 1000 -> none end).

info_fields() ->
    {ok, Ch} = py_channel:new(#{max_size => 1000}),
    ok = py_channel:send(Ch, hello),
    {ok, Keys} = py:eval(<<"sorted(Channel(ch).info())">>, #{ch => Ch}),
    ?assertEqual(lists:sort([atom_to_binary(K) || K <- maps:keys(py_channel:info(Ch))]), Keys),
    {ok, Info} = py:eval(<<"Channel(ch).info()">>, #{ch => Ch}),
    ?assertEqual(maps:values(py_channel:info(Ch)),
                 [maps:get(atom_to_binary(K), Info) || K <- maps:keys(py_channel:info(Ch))]).

namespace_names() ->
    %% A fresh process: its namespace is new, and nothing was imported into it.
    Parent = self(),
    spawn_link(fun() ->
                       Parent ! {names, py:eval(<<"(Channel.__name__, ChannelClosed.__name__, "
                                                  "reply.__name__)">>)}
               end),
    ?assertEqual({ok, {<<"Channel">>, <<"ChannelClosed">>, <<"reply">>}},
                 receive {names, Names} -> Names after 5000 -> timeout end).

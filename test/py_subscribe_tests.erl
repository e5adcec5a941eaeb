%% py_channel:subscribe/2: a process receiving a channel's terms as messages,
%% with credit like a socket's {active, N}, among every other kind of reader.
-module(py_subscribe_tests).

-include_lib("eunit/include/eunit.hrl").

-import(py_test_support, [send_retrying/2, recv_all/1, wait_until/1]).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

subscribe_test_() ->
    {setup, fun setup/0,
     [{"terms as messages, then passive once the credit is used", fun messages_then_passive/0},
      {"credit given while passive adds to nothing left", fun credit_after_passive/0},
      {"credit given while active adds to what is left", fun credit_adds_while_active/0},
      {"subscribe(Ch, 0) stops at once: later terms stay queued", fun stop_is_synchronous/0},
      {"subscribe(Ch, 0) while parked withdraws the wait", fun stop_while_parked/0},
      {timeout, 60, {"a stop racing a wake-up hands the wake on, loses nothing",
                     fun stop_racing_wake/0}},
      {"closed and drained: py_channel_closed, the subscription ends",
       fun closed_and_drained/0},
      {"a close while parked reaches the subscriber", fun close_while_parked/0},
      {"a close seen with no credit is reported once credit comes", fun close_without_credit/0},
      {timeout, 120, {"4 subscribers, recv/2 and Python, 2 producers: each term once",
                      fun mixed_readers_exactly_once/0}},
      {"a parked subscriber's exit ends its helper and withdraws the wait",
       fun parked_subscriber_exit/0},
      {"a passive subscriber's exit leaves what it did not take queued",
       fun passive_subscriber_exit/0},
      {"bad arguments are badarg in the caller", fun bad_arguments/0},
      {"subscriptions to two channels are independent", fun two_channels/0}]}.

%% Tests

messages_then_passive() ->
    {ok, Ch} = py_channel:new(),
    [ok = py_channel:send(Ch, N) || N <- lists:seq(1, 5)],
    ok = py_channel:subscribe(Ch, 3),
    ?assertEqual([1, 2, 3], [next_term(Ch) || _ <- lists:seq(1, 3)]),
    ?assertEqual(passive, next_event(Ch)),
    %% Passive: the helper takes nothing more.
    ?assertMatch(#{length := 2, received := 3}, py_channel:info(Ch)),
    ok = py_channel:subscribe(Ch, 0),
    ?assertEqual({ok, 4}, py_channel:try_receive(Ch)),
    no_messages().

credit_after_passive() ->
    {ok, Ch} = py_channel:new(),
    [ok = py_channel:send(Ch, N) || N <- lists:seq(1, 10)],
    ok = py_channel:subscribe(Ch, 2),
    ?assertEqual([{term, 1}, {term, 2}, passive], [next_event(Ch) || _ <- lists:seq(1, 3)]),
    ok = py_channel:subscribe(Ch, 3),
    ?assertEqual([{term, 3}, {term, 4}, {term, 5}, passive],
                 [next_event(Ch) || _ <- lists:seq(1, 4)]),
    ?assertMatch(#{length := 5}, py_channel:info(Ch)),
    ok = py_channel:subscribe(Ch, 0),
    no_messages().

credit_adds_while_active() ->
    {ok, Ch} = py_channel:new(),
    ok = py_channel:subscribe(Ch, 1),
    ok = py_channel:subscribe(Ch, 4),
    %% Parked, and done with both credits: process_info is ordered after the
    %% credit message this process sent.
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    [Helper] = helpers_of(self()),
    wait_until(fun() -> process_info(Helper, message_queue_len) =:= {message_queue_len, 0} end),
    [ok = py_channel:send(Ch, N) || N <- lists:seq(1, 10)],
    ?assertEqual([{term, N} || N <- lists:seq(1, 5)] ++ [passive],
                 [next_event(Ch) || _ <- lists:seq(1, 6)]),
    ?assertMatch(#{length := 5}, py_channel:info(Ch)),
    ok = py_channel:subscribe(Ch, 0),
    no_messages().

stop_is_synchronous() ->
    {ok, Ch} = py_channel:new(),
    Sent = 20000,
    [ok = py_channel:send(Ch, N) || N <- lists:seq(1, Sent)],
    ok = py_channel:subscribe(Ch, 100000),
    ?assertEqual(1, next_term(Ch)),
    [Helper] = helpers_of(self()),
    Monitor = monitor(process, Helper),
    ok = py_channel:subscribe(Ch, 0),
    %% Every term the subscription took is already here, in order.
    Delivered = [1 | flush_terms(Ch)],
    #{received := Received, length := Left} = py_channel:info(Ch),
    ?assertEqual(lists:seq(1, Received), Delivered),
    ?assertEqual(Sent - Received, Left),
    ?assertEqual(normal, down_reason(Monitor)),
    %% The helper is gone: nothing reads the channel for this process now.
    ok = py_channel:send(Ch, 1001),
    ?assertEqual(Left + 1, maps:get(length, py_channel:info(Ch))),
    ?assertEqual({ok, Received + 1}, py_channel:try_receive(Ch)),
    ?assertEqual([], flush_terms(Ch)),
    no_messages().

stop_while_parked() ->
    {ok, Ch} = py_channel:new(),
    ok = py_channel:subscribe(Ch, 10),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    [Helper] = helpers_of(self()),
    Monitor = monitor(process, Helper),
    ok = py_channel:subscribe(Ch, 0),
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))),
    ?assertEqual(normal, down_reason(Monitor)),
    [ok = py_channel:send(Ch, N) || N <- [a, b, c]],
    ?assertMatch(#{length := 3, received := 0}, py_channel:info(Ch)),
    ?assertEqual({ok, a}, py_channel:try_receive(Ch)),
    %% A new subscription after a stop starts afresh.
    ok = py_channel:subscribe(Ch, 5),
    ?assertEqual([b, c], [next_term(Ch) || _ <- [b, c]]),
    ok = py_channel:subscribe(Ch, 0),
    no_messages().

%% The subscription is woken for a term and stopped before it takes it: the
%% wake must go on to the other reader (a process in recv/2), or that term
%% would sit queued while the reader sleeps.
stop_racing_wake() ->
    {ok, Ch} = py_channel:new(),
    Parent = self(),
    Reader = spawn_link(fun() -> Parent ! {self(), recv_all(Ch)} end),
    Sender = spawn_link(fun() -> send_on_request(Ch) end),
    Rounds = 300,
    Subscribed = lists:append(
                   [begin
                        ok = py_channel:subscribe(Ch, 1),
                        Sender ! {send, N, self()},
                        receive {sent, N} -> ok end,
                        ok = py_channel:subscribe(Ch, 0),
                        Mine = flush_terms(Ch),
                        flush_passive(Ch),
                        %% Taken by one reader or the other, never stuck.
                        wait_until(fun() -> maps:get(length, py_channel:info(Ch)) =:= 0 end),
                        Mine
                    end || N <- lists:seq(1, Rounds)]),
    ok = py_channel:close(Ch),
    ByReader = receive {Reader, Terms} -> Terms after 30000 -> error(reader_hung) end,
    ?assertEqual(lists:seq(1, Rounds), lists:sort(Subscribed ++ ByReader)),
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))),
    unlink(Sender),
    exit(Sender, kill),
    no_messages().

closed_and_drained() ->
    {ok, Ch} = py_channel:new(),
    ok = py_channel:send(Ch, 1),
    ok = py_channel:send(Ch, 2),
    ok = py_channel:close(Ch),
    ok = py_channel:subscribe(Ch, 10),
    ?assertEqual([{term, 1}, {term, 2}, closed], [next_event(Ch) || _ <- [1, 2, 3]]),
    %% The helper ends with the subscription.
    wait_until(fun() -> helpers_of(self()) =:= [] end),
    %% The ended subscription is replaced: a new one sees the end again.
    ok = py_channel:subscribe(Ch, 1),
    ?assertEqual(closed, next_event(Ch)),
    %% Stopping a subscription that already ended is a no-op.
    ok = py_channel:subscribe(Ch, 0),
    ?assertEqual([], helpers_of(self())),
    no_messages().

close_while_parked() ->
    {ok, Ch} = py_channel:new(),
    ok = py_channel:subscribe(Ch, 10),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    ok = py_channel:send(Ch, last),
    ok = py_channel:close(Ch),
    ?assertEqual([{term, last}, closed], [next_event(Ch) || _ <- [1, 2]]),
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))),
    no_messages().

close_without_credit() ->
    {ok, Ch} = py_channel:new(),
    [ok = py_channel:send(Ch, N) || N <- [1, 2]],
    ok = py_channel:close(Ch),
    ok = py_channel:subscribe(Ch, 1),
    ?assertEqual([{term, 1}, passive], [next_event(Ch) || _ <- [1, 2]]),
    %% Passive: the close is not reported (term 2 is still queued), so a
    %% process that asked for no more hears nothing more.
    ?assertMatch(#{length := 1, closed := true}, py_channel:info(Ch)),
    ok = py_channel:subscribe(Ch, 5),
    ?assertEqual([{term, 2}, closed], [next_event(Ch) || _ <- [1, 2]]),
    no_messages().

mixed_readers_exactly_once() ->
    %% Python pauses now and then: a reader that spins takes nearly every term
    %% the moment it lands, and a subscriber could then end with none (it did,
    %% in one run of the whole suite), which would leave it untested.
    ok = py:exec(<<"def read_all(ref):\n"
                   "    taken = []\n"
                   "    for term in Channel(ref):\n"
                   "        taken.append(term)\n"
                   "        if len(taken) % 500 == 0:\n"
                   "            __import__('time').sleep(0.001)\n"
                   "    return taken\n">>),
    {ok, Ch} = py_channel:new(#{max_size => 16 * 1024}),
    Parent = self(),
    Subscribers = [spawn_link(fun() -> Parent ! {self(), subscriber_read_all(Ch, Credit)} end)
                   || Credit <- [1, 10, 100, 1000]],
    Reader = spawn_link(fun() -> Parent ! {self(), recv_all(Ch)} end),
    Python = py:spawn_call('__main__', read_all, [Ch]),
    PerProducer = 50000,
    Producers = [spawn_link(fun() ->
                                    [send_retrying(Ch, {P, N}) || N <- lists:seq(1, PerProducer)],
                                    Parent ! {done, self()}
                            end) || P <- [1, 2]],
    [receive {done, P} -> ok end || P <- Producers],
    ok = py_channel:close(Ch),
    {ok, ByPython} = py:await(Python, 60000),
    ByErlang = [receive {R, Terms} -> Terms after 60000 -> error({reader_hung, R}) end
                || R <- [Reader | Subscribers]],
    Results = [ByPython | ByErlang],
    Expected = [{P, N} || P <- [1, 2], N <- lists:seq(1, PerProducer)],
    ?assertEqual(Expected, lists:sort(lists:append(Results))),
    %% Each reader gets each producer's terms in the order they were sent.
    [?assertEqual(Mine, lists:sort(Mine))
     || Terms <- Results, P <- [1, 2], Mine <- [[T || {Q, _} = T <- Terms, Q =:= P]]],
    %% Every subscriber took part, so the test is about them.
    [?assertNotEqual([], Terms) || Terms <- tl(ByErlang)],
    ?assertMatch(#{length := 0, waiting_readers := 0, received := 100000}, py_channel:info(Ch)),
    no_messages().

parked_subscriber_exit() ->
    {ok, Ch} = py_channel:new(),
    {Subscriber, Monitor} =
        spawn_monitor(fun() ->
                              ok = py_channel:subscribe(Ch, 10),
                              receive exit -> ok end
                      end),
    wait_until(fun() -> maps:get(waiting_readers, py_channel:info(Ch)) =:= 1 end),
    [Helper] = helpers_of(Subscriber),
    HelperMonitor = monitor(process, Helper),
    Subscriber ! exit,
    ?assertEqual(normal, down_reason(Monitor)),
    ?assertEqual(normal, down_reason(HelperMonitor)),
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))),
    [ok = py_channel:send(Ch, N) || N <- [1, 2, 3]],
    ?assertMatch(#{length := 3, received := 0}, py_channel:info(Ch)),
    ?assertEqual([1, 2, 3], drain(Ch)),
    no_messages().

passive_subscriber_exit() ->
    {ok, Ch} = py_channel:new(),
    [ok = py_channel:send(Ch, N) || N <- lists:seq(1, 10)],
    Parent = self(),
    {Subscriber, Monitor} =
        spawn_monitor(fun() ->
                              ok = py_channel:subscribe(Ch, 3),
                              Events = [next_event(Ch) || _ <- [1, 2, 3, 4]],
                              Parent ! {self(), Events, helpers_of(self())},
                              receive exit -> ok end
                      end),
    {Events, [Helper]} = receive {Subscriber, E, H} -> {E, H} end,
    ?assertEqual([{term, 1}, {term, 2}, {term, 3}, passive], Events),
    HelperMonitor = monitor(process, Helper),
    Subscriber ! exit,
    ?assertEqual(normal, down_reason(Monitor)),
    ?assertEqual(normal, down_reason(HelperMonitor)),
    ?assertMatch(#{length := 7, received := 3, waiting_readers := 0}, py_channel:info(Ch)),
    ?assertEqual(lists:seq(4, 10), drain(Ch)),
    no_messages().

bad_arguments() ->
    {ok, Ch} = py_channel:new(),
    [?assertError(badarg, py_channel:subscribe(Ch, Credit))
     || Credit <- [-1, 1.0, infinity, true, once, "1"]],
    [?assertError(badarg, py_channel:subscribe(NotChannel, Credit))
     || NotChannel <- [make_ref(), self(), 42, <<"ch">>, {Ch}], Credit <- [0, 1]],
    %% No helper was started, and the channel has no reader.
    ?assertEqual([], helpers_of(self())),
    ?assertEqual(0, maps:get(waiting_readers, py_channel:info(Ch))),
    %% Stopping what was never started is fine.
    ?assertEqual(ok, py_channel:subscribe(Ch, 0)),
    ok = py_channel:send(Ch, kept),
    ?assertEqual({ok, kept}, py_channel:try_receive(Ch)),
    no_messages().

two_channels() ->
    {ok, A} = py_channel:new(),
    {ok, B} = py_channel:new(),
    ok = py_channel:subscribe(A, 2),
    ok = py_channel:subscribe(B, 1),
    wait_until(fun() -> length(helpers_of(self())) =:= 2 end),
    ok = py_channel:send(A, a1),
    ok = py_channel:send(B, b1),
    ok = py_channel:send(B, b2),
    ?assertEqual({term, a1}, next_event(A)),
    ?assertEqual([{term, b1}, passive], [next_event(B) || _ <- [1, 2]]),
    ok = py_channel:subscribe(B, 0),
    ?assertEqual({ok, b2}, py_channel:try_receive(B)),
    ok = py_channel:send(A, a2),
    ?assertEqual([{term, a2}, passive], [next_event(A) || _ <- [1, 2]]),
    ok = py_channel:subscribe(A, 0),
    ?assertEqual([], helpers_of(self())),
    no_messages().

%% Helpers

%% The next subscription message for Ch (matching Ch itself: the messages
%% carry the handle the subscriber passed).
next_event(Ch) ->
    receive
        {py_channel, Ch, Term} -> {term, Term};
        {py_channel_passive, Ch} -> passive;
        {py_channel_closed, Ch} -> closed
    after 10000 ->
            error(no_subscription_message)
    end.

next_term(Ch) ->
    {term, Term} = next_event(Ch),
    Term.

%% Term messages already in the mailbox.
flush_terms(Ch) ->
    receive {py_channel, Ch, Term} -> [Term | flush_terms(Ch)] after 0 -> [] end.

flush_passive(Ch) ->
    receive {py_channel_passive, Ch} -> ok after 0 -> ok end.

no_messages() ->
    ?assertEqual({messages, []}, process_info(self(), messages)).

down_reason(Monitor) ->
    receive {'DOWN', Monitor, process, _, Reason} -> Reason after 10000 -> error(no_down) end.

%% The subscription helpers of a process: those of the processes monitoring
%% it that py_channel_subscription started.
helpers_of(Pid) ->
    {monitored_by, Monitors} = process_info(Pid, monitored_by),
    [M || M <- Monitors, is_pid(M), is_helper(M)].

is_helper(Pid) ->
    case proc_lib:initial_call(Pid) of
        {py_channel_subscription, _, _} -> true;
        _ -> false
    end.

drain(Ch) ->
    case py_channel:try_receive(Ch) of
        {ok, T} -> [T | drain(Ch)];
        {error, _} -> []
    end.

%% A subscriber's whole share, renewing its credit each time it runs out.
subscriber_read_all(Ch, Credit) ->
    ok = py_channel:subscribe(Ch, Credit),
    subscriber_loop(Ch, Credit, []).

subscriber_loop(Ch, Credit, Acc) ->
    receive
        {py_channel, Ch, Term} ->
            subscriber_loop(Ch, Credit, [Term | Acc]);
        {py_channel_passive, Ch} ->
            ok = py_channel:subscribe(Ch, Credit),
            subscriber_loop(Ch, Credit, Acc);
        {py_channel_closed, Ch} ->
            {messages, []} = process_info(self(), messages),
            lists:reverse(Acc)
    after 60000 ->
            error(subscriber_hung)
    end.

send_on_request(Ch) ->
    receive
        {send, N, From} ->
            ok = py_channel:send(Ch, N),
            From ! {sent, N},
            send_on_request(Ch)
    end.

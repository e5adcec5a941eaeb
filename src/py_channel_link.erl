%% @private
%% @doc Pipelined sends to a channel of another node: what makes `send/2' to a
%% remote channel cost no round trip.
%%
%% On the sending node, one link process per channel collects what local
%% processes send and ships it to the owner node in batches, one distribution
%% message per batch. On the owner node a proxy process queues each batch in
%% the channel (`send_many/2', then `send/3' for what did not fit, so it waits
%% for room in order) and grants back the credit the batch used.
%%
%% Credit bounds what is in flight between the nodes: a sender takes the
%% weight of its term (`erlang:external_size/1') from the link's credit before
%% it hands the term over, and gets `busy' when there is not enough; the proxy
%% gives a batch's weight back once the batch is queued. So a full channel
%% (the proxy waits) soon makes remote senders see `busy', and at most
%% `credit' bytes are between the nodes.
%%
%% A term a sender handed over (`ok') is queued in order, exactly once, while
%% the nodes stay connected. If the connection drops, or the channel is closed
%% while terms are on their way, the terms not yet confirmed queued may be
%% lost: the link tells each process that asked (`py_channel:monitor/1') how
%% many (`{py_channel_down, Ref, Channel, Reason, Unconfirmed}'), and later
%% calls answer `{error, noconnection}' or `{error, closed}'.
%%
%% A call of the same node that must come after the terms sent before it
%% (`send/3', `send_many/2', `close/1') first waits until the link's terms are
%% queued (`flush/1').
-module(py_channel_link).

-export([send/2, flush/1, closed/1, monitor_link/1, demonitor_link/1]).
-export([start_proxy/2]).

-define(REGISTRY, py_channel_links).
%% Credit of a link, in bytes of `erlang:external_size/1'.
-define(CREDIT, (4 * 1024 * 1024)).
%% A batch ends at this many terms or bytes, or when the link's mailbox is empty.
-define(BATCH_TERMS, 512).
-define(BATCH_BYTES, (256 * 1024)).

%% The credit of a link that is ending: no send fits.
-define(ENDED, -(1 bsl 62)).

%% Slots of a link's atomics: bytes a sender may still hand over, sends
%% answered ok, and senders between taking credit and counting their send.
-define(CREDIT_LEFT, 1).
-define(ACCEPTED, 2).
-define(IN_FLIGHT, 3).

%% How long an ending link waits for senders caught between taking credit and
%% counting their send (only a sender killed in that window makes it wait this
%% long; its send then counts as possibly lost).
-define(SETTLE_MS, 100).

-record(link, {channel, proxy, proxy_monitor, credit,
               confirmed = 0 :: non_neg_integer(),
               shipped = 0 :: non_neg_integer(),
               flushes = [] :: [{non_neg_integer(), pid(), reference()}],
               monitors = #{} :: #{reference() => pid()}}).

%% @doc `py_channel:send/2' to a channel of another node.
-spec send(py_channel:channel(), term()) -> ok | busy | {error, term()}.
send(Channel, Term) ->
    case link_of(Channel) of
        {ok, Link, Credit, Window} ->
            Weight = erlang:external_size(Term),
            %% The owner weighs a term by its memory, which can be up to 16 times its
            %% external size (a string): a term that might not fit the channel alone is
            %% sent on its own and waited for, so that its answer (too_large) is exact.
            case Weight * 16 >= Window of
                true ->
                    flush(Channel),
                    py_channel_remote:call(Channel, send, [Channel, Term]);
                false ->
                    %% In flight from the credit taken to the send counted: a link that
                    %% ends meanwhile waits for the count (see down/2), so every send
                    %% answered ok is either confirmed or reported.
                    atomics:add(Credit, ?IN_FLIGHT, 1),
                    case atomics:sub_get(Credit, ?CREDIT_LEFT, Weight) of
                        Left when Left >= 0 ->
                            atomics:add(Credit, ?ACCEPTED, 1),
                            atomics:sub(Credit, ?IN_FLIGHT, 1),
                            Link ! {send, Term, Weight},
                            ok;
                        Left when Left < ?ENDED div 2 ->
                            atomics:sub(Credit, ?IN_FLIGHT, 1),
                            %% The link is ending: the send goes through a new one (or
                            %% learns why there can be none) once it is gone.
                            Ref = erlang:monitor(process, Link),
                            receive {'DOWN', Ref, process, _, _} -> ok end,
                            resend(Channel, Term);
                        _ ->
                            atomics:add(Credit, ?CREDIT_LEFT, Weight),
                            atomics:sub(Credit, ?IN_FLIGHT, 1),
                            busy
                    end
            end;
        {error, badarg} ->
            erlang:error(badarg, [Channel, Term]);
        {error, _} = Error ->
            Error
    end.

%% The registry drops an ended link (and makes a new one) when asked.
resend(Channel, Term) ->
    _ = gen_server_call({link, Channel}),
    send(Channel, Term).

%% @doc Returns once every term this node sent to `Channel' with `send/2' is
%% queued (or known lost).
-spec flush(py_channel:channel()) -> ok.
flush(Channel) ->
    case ets:whereis(?REGISTRY) =/= undefined andalso ets:lookup(?REGISTRY, Channel) of
        [{_, Link, _, _}] ->
            Ref = erlang:monitor(process, Link),
            Link ! {flush, self(), Ref},
            receive
                {Ref, flushed} -> erlang:demonitor(Ref, [flush]), ok;
                {'DOWN', Ref, process, _, _} -> ok
            end;
        _ ->
            ok
    end.

%% @doc After this node closed `Channel': its link ends (the next send learns
%% that the channel is closed).
-spec closed(py_channel:channel()) -> ok.
closed(Channel) ->
    case ets:whereis(?REGISTRY) =/= undefined andalso ets:lookup(?REGISTRY, Channel) of
        [{_, Link, _, _}] ->
            Ref = erlang:monitor(process, Link),
            Link ! channel_closed,
            receive {'DOWN', Ref, process, _, _} -> ok end;
        _ ->
            ok
    end.

%% @doc Asks to be told if terms this node sent to the remote `Channel' may be
%% lost: one message `{py_channel_down, Ref, Channel, Reason, Unconfirmed}',
%% `Reason' `noconnection' or `closed'.
-spec monitor_link(py_channel:channel()) -> reference().
monitor_link(Channel) ->
    case link_of(Channel) of
        {ok, Link, _, _} ->
            Ref = make_ref(),
            Link ! {monitor, self(), Ref},
            Ref;
        {error, badarg} ->
            erlang:error(badarg, [Channel]);
        {error, Reason} ->
            Ref = make_ref(),
            self() ! {py_channel_down, Ref, Channel, Reason, 0},
            Ref
    end.

%% @doc Cancels `monitor/1' (a message already sent stays in the mailbox).
-spec demonitor_link(reference()) -> ok.
demonitor_link(Ref) ->
    case ets:whereis(?REGISTRY) of
        undefined -> ok;
        _ -> [Link ! {demonitor, Ref} || {_, Link, _, _} <- ets:tab2list(?REGISTRY)], ok
    end.

%% The link for `Channel' (made if there is none), its credit, and the size
%% of its window: the channel's `max_size', or the link's own credit.
link_of(Channel) ->
    case ets:whereis(?REGISTRY) =/= undefined andalso ets:lookup(?REGISTRY, Channel) of
        [{_, Link, Credit, Window}] -> {ok, Link, Credit, Window};
        _ -> gen_server_call({link, Channel})
    end.

%% The registry: owns the table of links, makes them one at a time.
gen_server_call(Request) ->
    Registry = registry(),
    Ref = erlang:monitor(process, Registry),
    Registry ! {Request, self(), Ref},
    receive
        {Ref, Answer} -> erlang:demonitor(Ref, [flush]), Answer;
        {'DOWN', Ref, process, _, Reason} -> {error, {link_registry_down, Reason}}
    end.

registry() ->
    case whereis(?REGISTRY) of
        undefined ->
            Self = self(),
            {Pid, Ref} = spawn_monitor(fun() -> start_registry(Self) end),
            receive
                {Pid, started} -> erlang:demonitor(Ref, [flush]), Pid;
                {'DOWN', Ref, process, _, _} -> registry() % another made it first
            end;
        Pid ->
            Pid
    end.

start_registry(Starter) ->
    %% Two processes may start one at once: the second gives way (its starter
    %% then finds the first).
    try register(?REGISTRY, self()) catch error:badarg -> exit(normal) end,
    ?REGISTRY = ets:new(?REGISTRY, [named_table, protected, {read_concurrency, true}]),
    Starter ! {self(), started},
    registry_loop(#{}).

registry_loop(Links) ->
    receive
        {{link, Channel}, From, Ref} ->
            Live = [Entry || {_, Link, _, _} = Entry <- ets:lookup(?REGISTRY, Channel),
                             is_process_alive(Link)],
            case Live of
                [{_, Link, Credit, Window}] ->
                    From ! {Ref, {ok, Link, Credit, Window}},
                    registry_loop(Links);
                [] ->
                    case start_link(Channel) of
                        {ok, Link, Credit, Window} ->
                            true = ets:insert(?REGISTRY, {Channel, Link, Credit, Window}),
                            Monitor = erlang:monitor(process, Link),
                            From ! {Ref, {ok, Link, Credit, Window}},
                            registry_loop(Links#{Monitor => Channel});
                        {error, _} = Error ->
                            From ! {Ref, Error},
                            registry_loop(Links)
                    end
            end;
        {'DOWN', Monitor, process, _, _} ->
            {Channel, Rest} = maps:take(Monitor, Links),
            true = ets:delete(?REGISTRY, Channel),
            registry_loop(Rest);
        _ ->
            registry_loop(Links)
    end.

%% A link process for `Channel', with its proxy on the owner node.
start_link(Channel) ->
    Self = self(),
    Credit = atomics:new(3, [{signed, true}]),
    {Link, Ref} = spawn_monitor(fun() -> init_link(Self, Channel, Credit) end),
    receive
        {Link, {started, Window}} ->
            erlang:demonitor(Ref, [flush]),
            {ok, Link, Credit, Window};
        {Link, {error, _} = Error} -> erlang:demonitor(Ref, [flush]), Error;
        {'DOWN', Ref, process, _, Reason} -> {error, {link_down, Reason}}
    end.

init_link(Registry, Channel, Credit) ->
    try erpc:call(node(Channel), ?MODULE, start_proxy, [Channel, self()], infinity) of
        {ok, Proxy, MaxSize} ->
            Monitor = erlang:monitor(process, Proxy),
            %% In flight at most what the channel holds (or the link's own bound).
            Window = case MaxSize of 0 -> ?CREDIT; _ -> min(MaxSize, ?CREDIT) end,
            atomics:put(Credit, ?CREDIT_LEFT, Window),
            Registry ! {self(), {started, Window}},
            link_loop(#link{channel = Channel, proxy = Proxy, proxy_monitor = Monitor,
                            credit = Credit});
        {error, _} = Error ->
            Registry ! {self(), Error}
    catch
        error:{erpc, noconnection} -> Registry ! {self(), {error, noconnection}};
        error:{exception, badarg, _} -> Registry ! {self(), {error, badarg}}
    end.

link_loop(#link{proxy = Proxy, proxy_monitor = Monitor} = State) ->
    receive
        {send, Term, Weight} ->
            {Terms, Count, Bytes} = batch([Term], 1, Weight),
            Proxy ! {batch, self(), Terms, Count, Bytes},
            link_loop(State#link{shipped = State#link.shipped + Count});
        {confirmed, Proxy, Count, Bytes} ->
            atomics:add(State#link.credit, ?CREDIT_LEFT, Bytes),
            Confirmed = State#link.confirmed + Count,
            link_loop(answer_flushes(State#link{confirmed = Confirmed}));
        {flush, From, Ref} ->
            %% Everything received before this message is shipped.
            link_loop(answer_flushes(State#link{flushes = [{State#link.shipped, From, Ref}
                                                           | State#link.flushes]}));
        {monitor, From, Ref} ->
            link_loop(State#link{monitors = (State#link.monitors)#{Ref => From}});
        {demonitor, Ref} ->
            link_loop(State#link{monitors = maps:remove(Ref, State#link.monitors)});
        {closed, Proxy} ->
            down(closed, State);
        channel_closed ->
            down(closed, State);
        {'DOWN', Monitor, process, _, Reason} ->
            down(Reason, State)
    end.

%% More terms already in the mailbox join the batch.
batch(Terms, Count, Bytes) when Count >= ?BATCH_TERMS; Bytes >= ?BATCH_BYTES ->
    {lists:reverse(Terms), Count, Bytes};
batch(Terms, Count, Bytes) ->
    receive
        {send, Term, Weight} -> batch([Term | Terms], Count + 1, Bytes + Weight)
    after 0 ->
            {lists:reverse(Terms), Count, Bytes}
    end.

answer_flushes(#link{confirmed = Confirmed, flushes = Flushes} = State) ->
    {Done, Waiting} = lists:partition(fun({Upto, _, _}) -> Upto =< Confirmed end, Flushes),
    [From ! {Ref, flushed} || {_, From, Ref} <- Done],
    State#link{flushes = Waiting}.

%% The link is over: whoever monitors it learns how many terms handed over
%% were not confirmed queued (those still in this mailbox included); then the
%% registry drops it, and the next send finds out afresh.
down(Reason, #link{channel = Channel, credit = Credit, confirmed = Confirmed,
                   flushes = Flushes, monitors = Monitors}) ->
    %% No more sends through this link: a send until the registry drops it finds
    %% no credit. One that took credit just before counts its send just after:
    %% read the count once no send is in between (one that read it first, then
    %% counted, was reported as not lost and then lost with the link's mailbox).
    atomics:put(Credit, ?CREDIT_LEFT, ?ENDED),
    Stuck = settle(Credit, erlang:monotonic_time(millisecond) + ?SETTLE_MS),
    Unconfirmed = atomics:get(Credit, ?ACCEPTED) + Stuck - Confirmed,
    [From ! {py_channel_down, Ref, Channel, Reason, Unconfirmed}
     || {Ref, From} <- maps:to_list(Monitors)],
    [From ! {Ref, flushed} || {_, From, Ref} <- Flushes],
    ok.

%% Waits until no sender is between taking credit and counting its send; the
%% number still there at `Deadline' (senders killed in that window).
settle(Credit, Deadline) ->
    case atomics:get(Credit, ?IN_FLIGHT) of
        0 ->
            0;
        InFlight ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true ->
                    InFlight;
                false ->
                    erlang:yield(),
                    settle(Credit, Deadline)
            end
    end.

%% On the owner node: the proxy that queues a link's batches, in order.
-spec start_proxy(py_channel:channel(), pid()) ->
          {ok, pid(), non_neg_integer()} | {error, closed}.
start_proxy(Channel, Link) ->
    case py_channel:info(Channel) of
        #{closed := true} ->
            {error, closed};
        #{max_size := MaxSize} ->
            Proxy = spawn(fun() ->
                                  %% What this process is, for observers (and tests).
                                  put(py_channel_proxy_for, Link),
                                  proxy(Channel, Link, erlang:monitor(process, Link))
                          end),
            {ok, Proxy, MaxSize}
    end.

proxy(Channel, Link, Monitor) ->
    receive
        {batch, Link, Terms, Count, Bytes} ->
            case queue_all(Channel, Terms) of
                ok ->
                    Link ! {confirmed, self(), Count, Bytes},
                    proxy(Channel, Link, Monitor);
                {error, closed} ->
                    Link ! {closed, self()}
            end;
        {'DOWN', Monitor, process, _, _} ->
            %% Batches that arrived before the link went are queued all the same.
            drain_batches(Channel, Link)
    end.

drain_batches(Channel, Link) ->
    receive
        {batch, Link, Terms, _, _} -> _ = queue_all(Channel, Terms), drain_batches(Channel, Link)
    after 0 -> ok
    end.

queue_all(_Channel, []) ->
    ok;
queue_all(Channel, Terms) ->
    case py_channel:send_many(Channel, Terms) of
        {ok, Accepted} ->
            case lists:nthtail(Accepted, Terms) of
                [] -> ok;
                [Next | Rest] ->
                    case py_channel:send(Channel, Next, infinity) of
                        ok -> queue_all(Channel, Rest);
                        {error, closed} -> {error, closed}
                    end
            end;
        {error, closed} ->
            {error, closed}
    end.

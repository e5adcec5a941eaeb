%% @private
%% @doc The reader behind `py_channel:subscribe/2': one small process per
%% (channel, subscriber) pair that takes terms from the channel while the
%% subscriber has credit and sends them to it as messages.
%%
%% It reads as `py_channel:recv/2' does (take; park with `wait/2' when the
%% queue is empty; a `{py_channel_ready, Tag}' message when a term or the close
%% arrives), so it is one more reader among Python's and Erlang's: each term
%% goes to exactly one of them. It waits only in `receive', never in a NIF, and
%% answers credit and stop requests while parked.
%%
%% The subscriber finds its helper for a channel in its own process dictionary
%% (`subscribe/2' runs in the subscriber).
-module(py_channel_subscription).

-export([subscribe/2]).
-export([start_helper/3]).

%% The process dictionary key of the subscriber's helpers: one map, so that
%% the ended ones can be found and dropped without scanning the whole
%% dictionary.
-define(HELPERS, py_channel_subscriptions).

%% How long a helper that withdrew its wait waits for a wake-up already on its
%% way (the sender fires it microseconds after): it must not be left behind.
-define(WAKE_IN_FLIGHT_MS, 1000).

-record(state, {channel :: py_channel:channel(),
                subscriber :: pid(),
                monitor :: reference(),
                credit :: non_neg_integer()}).

-type state() :: #state{}.

%% @doc Runs in the subscriber: adds `Credit' to its subscription to
%% `Channel', starting a helper if it has none (or only one that ended), or
%% with 0 stops the subscription and returns once the helper has sent its
%% last message. A non-channel, or a credit that is not a non-negative
%% integer, is a `badarg' error.
-spec subscribe(py_channel:channel(), non_neg_integer()) -> ok.
subscribe(Channel, Credit) when is_integer(Credit), Credit >= 0 ->
    Helpers = helpers(),
    case {maps:find(Channel, Helpers), Credit} of
        {{ok, Helper}, 0} ->
            put(?HELPERS, maps:remove(Channel, Helpers)),
            stop(Helper);
        {{ok, Helper}, _} ->
            case is_alive(Helper) of
                true -> Helper ! {credit, Credit}, ok;
                false -> start(Channel, Credit, Helpers)
            end;
        {error, 0} ->
            is_channel(Channel) orelse erlang:error(badarg, [Channel, Credit]),
            ok;
        {error, _} ->
            start(Channel, Credit, Helpers)
    end;
subscribe(Channel, Credit) ->
    erlang:error(badarg, [Channel, Credit]).

-spec helpers() -> #{py_channel:channel() => pid()}.
helpers() ->
    case get(?HELPERS) of
        undefined -> #{};
        Helpers -> Helpers
    end.

-spec is_channel(term()) -> boolean().
is_channel(Term) ->
    try py_channel_nif:info(Term) of
        _ -> true
    catch
        error:badarg -> false
    end.

%% Helpers that ended (their channel closed) are dropped here, so a process
%% subscribing to one short-lived channel after another does not keep every
%% one of them alive in its dictionary.
-spec start(py_channel:channel(), pos_integer(), #{py_channel:channel() => pid()}) -> ok.
start(Channel, Credit, Helpers) ->
    Live = maps:filter(fun(_, Pid) -> is_alive(Pid) end, Helpers),
    Subscriber = self(),
    case is_reference(Channel) andalso node(Channel) =/= node() of
        false ->
            is_channel(Channel) orelse erlang:error(badarg, [Channel, Credit]),
            Helper = start_helper(Channel, Subscriber, Credit),
            put(?HELPERS, Live#{Channel => Helper});
        true ->
            %% The helper reads on the owner node, sending to this process.
            try erpc:call(node(Channel), ?MODULE, start_helper, [Channel, Subscriber, Credit],
                          infinity) of
                Helper ->
                    watch_remote(Channel, Helper, Subscriber),
                    put(?HELPERS, Live#{Channel => Helper})
            catch
                error:{erpc, noconnection} ->
                    put(?HELPERS, Live),
                    Subscriber ! {py_channel_closed, Channel};
                error:{exception, badarg, _} ->
                    erlang:error(badarg, [Channel, Credit])
            end
    end,
    ok.

%% @private Starts the helper that reads `Channel' for `Subscriber' (on the
%% node that owns the channel).
-spec start_helper(py_channel:channel(), pid(), pos_integer()) -> pid().
start_helper(Channel, Subscriber, Credit) ->
    is_channel(Channel) orelse erlang:error(badarg, [Channel, Subscriber, Credit]),
    proc_lib:spawn(fun() -> init(Channel, Subscriber, Credit) end).

%% A helper on another node: if the connection to it drops, the subscription
%% has ended for this process, which learns it as from a close. A small
%% process here watches the helper for that, as long as both live.
-spec watch_remote(py_channel:channel(), pid(), pid()) -> pid().
watch_remote(Channel, Helper, Subscriber) ->
    spawn(fun() ->
                  HelperMonitor = erlang:monitor(process, Helper),
                  SubscriberMonitor = erlang:monitor(process, Subscriber),
                  receive
                      {'DOWN', HelperMonitor, process, _, noconnection} ->
                          Subscriber ! {py_channel_closed, Channel};
                      {'DOWN', HelperMonitor, process, _, _} -> ok;
                      {'DOWN', SubscriberMonitor, process, _, _} -> ok
                  end
          end).

-spec is_alive(pid()) -> boolean().
is_alive(Pid) when node(Pid) =:= node() ->
    is_process_alive(Pid);
is_alive(Pid) ->
    try erpc:call(node(Pid), erlang, is_process_alive, [Pid], infinity)
    catch error:{erpc, noconnection} -> false
    end.

%% The helper sends its term messages and then the reply to the same
%% process, and the BEAM keeps messages between two processes in order: once
%% the reply is here, every term the helper took is in the mailbox before it.
-spec stop(pid()) -> ok.
stop(Helper) ->
    Ref = erlang:monitor(process, Helper),
    Helper ! {stop, self(), Ref},
    receive
        {Ref, stopped} ->
            erlang:demonitor(Ref, [flush]),
            ok;
        {'DOWN', Ref, process, Helper, _} ->
            %% It had already ended (the channel closed and drained).
            ok
    end.

-spec init(py_channel:channel(), pid(), pos_integer()) -> ok.
init(Channel, Subscriber, Credit) ->
    Monitor = erlang:monitor(process, Subscriber),
    deliver(#state{channel = Channel, subscriber = Subscriber,
                   monitor = Monitor, credit = Credit}).

%% Credit left: take terms until the queue is empty, looking at the mailbox
%% between two terms so that a stop or the subscriber's exit is seen even
%% while a long backlog drains.
-spec deliver(state()) -> ok.
deliver(#state{credit = 0} = State) ->
    passive(State);
deliver(State) ->
    receive
        Message -> control(Message, State)
    after 0 ->
            take(State)
    end.

-spec take(state()) -> ok.
take(#state{channel = Channel} = State) ->
    taken(py_channel_nif:try_receive(Channel), State).

-spec taken({ok, term()} | {error, empty | closed}, state()) -> ok.
taken(Received, #state{channel = Channel, subscriber = Subscriber, credit = Credit} = State) ->
    case Received of
        {ok, Term} ->
            Subscriber ! {py_channel, Channel, Term},
            case Credit of
                1 -> Subscriber ! {py_channel_passive, Channel};
                _ -> ok
            end,
            deliver(State#state{credit = Credit - 1});
        {error, empty} ->
            park(State);
        {error, closed} ->
            Subscriber ! {py_channel_closed, Channel},
            ok
    end.

-spec park(state()) -> ok.
park(#state{channel = Channel} = State) ->
    Tag = erlang:unique_integer([positive]),
    case py_channel_nif:wait(Channel, Tag) of
        ready -> deliver(State);
        {waiting, Watch} -> parked(State, Watch, Tag)
    end.

%% Parked as a reader of the channel. A wake-up means a term or the close is
%% there; whoever is woken must take it or pass the wake on, so leaving this
%% state other than by the wake goes through `withdraw/2'. `Watch' monitors
%% this process until then: should it exit, the wake goes to another reader.
-spec parked(state(), reference(), pos_integer()) -> ok.
parked(#state{monitor = Monitor, credit = Credit} = State, Watch, Tag) ->
    receive
        {py_channel_ready, Tag} ->
            %% Woken for a term or the close: take it (a stop that came first withdraws,
            %% and the withdrawal passes the wake on).
            taken(py_channel_nif:take_woken(Watch), State);
        {credit, More} ->
            parked(State#state{credit = Credit + More}, Watch, Tag);
        {stop, From, Ref} ->
            withdraw(Watch, Tag),
            From ! {Ref, stopped},
            ok;
        {'DOWN', Monitor, process, _, _} ->
            withdraw(Watch, Tag);
        _Stray ->
            parked(State, Watch, Tag)
    end.

%% Credit used up: not a reader of the channel until more credit comes. A
%% close seen now is reported once credit comes and the queue is drained.
-spec passive(state()) -> ok.
passive(State) ->
    receive
        Message -> control(Message, State)
    end.

%% A message that came while not parked: more credit goes on delivering; a
%% stop or the subscriber's exit ends the helper. Anything else is not meant
%% for this process and is dropped, so the mailbox, looked at between every
%% two terms, stays empty.
-spec control(term(), state()) -> ok.
control({credit, More}, #state{credit = Credit} = State) ->
    deliver(State#state{credit = Credit + More});
control({stop, From, Ref}, _State) ->
    From ! {Ref, stopped},
    ok;
control({'DOWN', Monitor, process, _, _}, #state{monitor = Monitor}) ->
    ok;
control(_Stray, State) ->
    deliver(State).

%% Leaves the channel's readers. If a wake-up was already sent, the channel
%% passes it to another reader (cancel_wait does), and its message is taken
%% out of the mailbox here.
-spec withdraw(reference(), pos_integer()) -> ok.
withdraw(Watch, Tag) ->
    case py_channel_nif:cancel_wait(Watch) of
        cancelled -> ok;
        woken -> receive {py_channel_ready, Tag} -> ok after ?WAKE_IN_FLIGHT_MS -> ok end
    end.

%% @doc A backpressured channel from Erlang processes to Python code.
%%
%% A channel is a FIFO of Erlang terms held in native memory. Any process may
%% `send/2' to it; Python code running in the embedded interpreter reads it
%% (`for msg in Channel(ref)'), and so may Erlang processes, with
%% `try_receive/1' and `recv/2'.
%%
%% Sending never blocks and never waits on Python: it returns `ok' (queued),
%% `busy' (queued bytes plus this term would exceed `max_size'; retry later) or
%% an error. A term accepted with `ok' is received exactly once, or is still
%% queued: `close/1' stops new sends but readers still drain what is queued.
%%
%% A channel is owned by the process that created it (or `#{owner => Pid}'),
%% like an ETS table: when the owner exits the channel closes. Its memory is
%% freed when the last reference to it, in Erlang or Python, is gone.
%%
%% The API is that of erlang_python 2.3's `py_channel' module, so code written
%% for it runs unchanged.
-module(py_channel).

-export([new/0, new/1, send/2, send/3, send_many/2, close/1, info/1, try_receive/1,
         recv/1, recv/2, term_size/1, register_callbacks/0, stats/0]).
-export([is_timeout/1]).
-export([subscribe/2, monitor/1, demonitor/1]).
-export([call/2, call/3, reply/2]).

%% py_channel:demonitor/1 is this module's, as py_channel:monitor/1.
-compile({no_auto_import, [demonitor/1]}).

-export_type([channel/0, options/0, info/0, caller/0]).

-opaque channel() :: reference().
%% A channel handle. It may be sent in messages, stored, and passed to Python.

-opaque caller() :: reference().
%% A process waiting in `call/3' for its reply: a request comes as
%% `{Caller, Request}', and `reply/2' (Python's `reply(caller, term)')
%% answers it, once.

-type options() :: #{max_size => non_neg_integer(), owner => pid()}.
%% `max_size': bytes of queued terms allowed before `send/2' answers `busy'
%% (see `term_size/1' for how a term is counted); 0, the default, means unlimited.
%% `owner': the process whose exit closes the channel; the caller by default.

-type info() :: #{size := non_neg_integer(),
                  max_size := non_neg_integer(),
                  closed := boolean(),
                  length := non_neg_integer(),
                  waiting_readers := non_neg_integer(),
                  waiting_senders := non_neg_integer(),
                  sent := non_neg_integer(),
                  received := non_neg_integer(),
                  busy := non_neg_integer(),
                  sent_bytes := non_neg_integer(),
                  received_bytes := non_neg_integer()}.
%% `size': bytes queued (as `term_size/1' counts them); `max_size': the
%% limit, 0 for unlimited; `closed': true once `close/1' ran or the owner
%% exited (queued terms may still be there); `length': terms queued;
%% `waiting_readers': readers (Python threads and coroutines, Erlang
%% processes in `recv/2') parked on the channel right now; `waiting_senders':
%% senders (`send/3', Python's `Channel.send' and `async_send') waiting for
%% room right now.
%%
%% Running totals since the channel was made, for an operator to graph (they
%% only grow): `sent' terms accepted, `received' terms taken by readers,
%% `busy' sends refused with `busy', and `sent_bytes', `received_bytes' in
%% `term_size/1' bytes. The same eleven keys in Elixir (`PyChannel.info/1'),
%% Gleam (`channel.Info') and Python (`Channel.info()').

%% Bytes must fit the native counter (47 bits: 128 TiB).
-define(MAX_BYTES, (1 bsl 47 - 1)).

%% The largest timeout `receive ... after' takes.
-define(MAX_TIMEOUT, 16#FFFFFFFF).

%% How long a reader that gave up waits for a wake-up already on its way, so it
%% does not linger in its mailbox. The sender fires it microseconds after.
-define(WAKE_IN_FLIGHT_MS, 1000).

%% How many more times `recv/2' looks at an empty channel before it parks (about
%% a microsecond in all).
-define(LOOKS_BEFORE_WAIT, 8).

%% The ticket of a sender that has not parked yet (tickets start at 1).
-define(FIRST_PARK, 0).

%% The process dictionary key of the callers of the process's last `call/3's, and
%% how many are kept.
-define(LAST_CALLERS, {?MODULE, last_callers}).
-define(CALLERS_KEPT, 4).

%% A channel made on another node: the call is made there (py_channel_remote).
-define(IS_REMOTE(Channel), is_reference(Channel) andalso node(Channel) =/= node()).

%% @doc A new unbounded channel owned by the caller.
%% @equiv new(#{})
-spec new() -> {ok, channel()}.
new() ->
    new(#{}).

%% @doc A new channel. Options: `max_size' (bytes, 0 = unlimited) and
%% `owner' (a local pid, the caller by default). A bad value or an unknown
%% key gives `{error, {badarg, Key}}'.
-spec new(options()) -> {ok, channel()} | {error, {badarg, term()}}.
new(Options) when is_map(Options) ->
    Defaults = #{max_size => 0, owner => self()},
    case check_options(maps:to_list(Options)) of
        ok ->
            #{max_size := MaxSize, owner := Owner} = maps:merge(Defaults, Options),
            {ok, py_channel_nif:new_channel(MaxSize, Owner)};
        {error, _} = Error ->
            Error
    end.

check_options([]) ->
    ok;
check_options([{max_size, Bytes} | Rest])
  when is_integer(Bytes), Bytes >= 0, Bytes =< ?MAX_BYTES ->
    check_options(Rest);
check_options([{owner, Pid} | Rest]) when is_pid(Pid), node(Pid) =:= node() ->
    check_options(Rest);
check_options([{Key, _} | _]) ->
    {error, {badarg, Key}}.

%% @doc Queues `Term' without blocking.
%% `busy' when the queued bytes plus this term's would exceed `max_size';
%% `{error, too_large}' when the term alone exceeds it (it can never fit);
%% `{error, closed}' after `close/1' or the owner's exit.
-spec send(channel(), term()) -> ok | busy | {error, closed | too_large}.
send(Channel, Term) when ?IS_REMOTE(Channel) ->
    py_channel_link:send(Channel, Term);
send(Channel, Term) ->
    py_channel_nif:send(Channel, Term).

%% @doc Queues `Term', waiting up to `Timeout' milliseconds for room: `ok',
%% `{error, timeout}' (no room in time; nothing queued), `{error, closed}'
%% (closed before or while waiting) or `{error, too_large}' (the term alone
%% exceeds `max_size'). The wait is an ordinary `receive': no scheduler waits,
%% nothing polls. Waiting senders are woken in the order they began to wait,
%% by the reader whose receive leaves the channel at most half full (so a
%% waiting producer sends many terms per wake, not one; a receive that
%% empties it wakes them all); a sender woken when the room is already taken
%% again keeps its place in line. With `Timeout' 0 it is `send/2' that answers
%% `{error, timeout}' instead of `busy'. `Timeout' is `infinity' or 0 to
%% 4294967295; anything else is a `badarg' error, raised before the channel is
%% touched.
-spec send(channel(), term(), timeout()) -> ok | {error, timeout | closed | too_large}.
send(Channel, Term, Timeout) when ?IS_REMOTE(Channel) ->
    ok = py_channel_link:flush(Channel), % after what this node sent with send/2
    py_channel_remote:call(Channel, send, [Channel, Term, Timeout]);
send(Channel, Term, Timeout) ->
    is_timeout(Timeout) orelse erlang:error(badarg, [Channel, Term, Timeout]),
    case py_channel_nif:send(Channel, Term) of
        busy when Timeout =:= 0 -> {error, timeout};
        busy -> send_when_room(Channel, Term, deadline(Timeout), ?FIRST_PARK);
        Sent -> Sent
    end.

%% `Ticket' is the place in the line of waiting senders this process got when
%% it first parked (a watch that monitors it: should it exit before it calls
%% again, its wake goes to the next sender): woken, it parks again in that
%% place if the room is gone.
send_when_room(Channel, Term, Deadline, Ticket) ->
    Tag = erlang:unique_integer([positive]),
    case py_channel_nif:send_or_wait(Channel, Term, Tag, Ticket) of
        {waiting, Watch} ->
            receive
                {py_channel_ready, Tag} -> send_when_room(Channel, Term, Deadline, Watch)
            after remaining(Deadline) ->
                    give_up_sending(Channel, Term, Watch, Tag)
            end;
        {woken, Sent} ->
            %% A reader woke this process in the moment it was parked: the wake
            %% arrives though the send is done, and must not be left behind.
            receive {py_channel_ready, Tag} -> Sent after ?WAKE_IN_FLIGHT_MS -> Sent end;
        Sent ->
            Sent
    end.

%% Withdraw from the waiting senders; a wake-up that raced with the timeout is
%% collected (and passed on to the next sender by the NIF), and the room it
%% announced tried once more rather than left unused.
give_up_sending(Channel, Term, Watch, Tag) ->
    case py_channel_nif:cancel_send_wait(Watch) of
        cancelled ->
            {error, timeout};
        woken ->
            receive {py_channel_ready, Tag} -> ok after ?WAKE_IN_FLIGHT_MS -> ok end,
            case py_channel_nif:send(Channel, Term) of
                busy -> {error, timeout};
                Sent -> Sent
            end
    end.

%% @doc Queues the terms of `Terms' in order while they fit, without
%% waiting: `{ok, Accepted}' says how many (the first `Accepted' terms) were
%% queued; the rest were not (`send/3' one of them to wait for room).
%% `{error, closed}' if the channel was closed before the first. Cheaper
%% than one `send/2' per term. Not a list: `badarg'.
-spec send_many(channel(), [term()]) -> {ok, non_neg_integer()} | {error, closed}.
send_many(Channel, Terms) when ?IS_REMOTE(Channel) ->
    ok = py_channel_link:flush(Channel), % after what this node sent with send/2
    py_channel_remote:call(Channel, send_many, [Channel, Terms]);
send_many(Channel, Terms) ->
    %% A proper list, checked before anything is queued.
    _ = length(Terms),
    send_many(Channel, Terms, 0).

send_many(Channel, Terms, Accepted) ->
    case py_channel_nif:send_many(Channel, Terms) of
        {0, closed, _} when Accepted =:= 0 -> {error, closed};
        {Sent, more, Rest} -> send_many(Channel, Rest, Accepted + Sent);
        {Sent, _Stop, _Rest} -> {ok, Accepted + Sent}
    end.

%% @doc Closes the channel: sends fail from now on, queued terms can still be
%% received, and every blocked reader (Python or Erlang) wakes. Idempotent.
-spec close(channel()) -> ok.
close(Channel) when ?IS_REMOTE(Channel) ->
    ok = py_channel_link:flush(Channel), % after what this node sent with send/2
    case py_channel_remote:call(Channel, close, [Channel]) of
        ok -> py_channel_link:closed(Channel);
        Error -> Error
    end;
close(Channel) ->
    py_channel_nif:close(Channel).

%% @doc The channel's state (`size', `max_size', `closed', `length',
%% `waiting_readers') and running totals (`sent', `received', `busy',
%% `sent_bytes', `received_bytes'); see `info()'.
-spec info(channel()) -> info().
info(Channel) when ?IS_REMOTE(Channel) ->
    py_channel_remote:call(Channel, info, [Channel]);
info(Channel) ->
    py_channel_nif:info(Channel).

%% @doc Takes the oldest queued term without waiting. `{error, closed}' only
%% once the channel is closed and drained.
-spec try_receive(channel()) -> {ok, term()} | {error, empty | closed}.
try_receive(Channel) when ?IS_REMOTE(Channel) ->
    py_channel_remote:call(Channel, try_receive, [Channel]);
try_receive(Channel) ->
    py_channel_nif:try_receive(Channel).

%% @doc Takes the oldest queued term, waiting as long as needed.
%% @equiv recv(Channel, infinity)
-spec recv(channel()) -> {ok, term()} | {error, closed}.
recv(Channel) ->
    recv(Channel, infinity).

%% @doc Takes the oldest queued term, waiting up to `Timeout' milliseconds.
%% The wait is an ordinary `receive': the process sleeps until a term or the
%% close arrives. Several processes may wait on one channel; each term goes
%% to exactly one of them. `Timeout' is `infinity' or what `receive ... after'
%% takes (0 to 4294967295); anything else is a `badarg' error, raised before
%% the channel is touched.
-spec recv(channel(), timeout()) -> {ok, term()} | {error, closed | timeout}.
recv(Channel, Timeout) when ?IS_REMOTE(Channel) ->
    py_channel_remote:call(Channel, recv, [Channel, Timeout]);
recv(Channel, Timeout) ->
    is_timeout(Timeout) orelse erlang:error(badarg, [Channel, Timeout]),
    case try_receive(Channel) of
        {error, empty} when Timeout =/= 0 -> look_again(Channel, deadline(Timeout), ?LOOKS_BEFORE_WAIT);
        {error, empty} -> wait_then_recv(Channel, deadline(Timeout));
        Done -> Done
    end.

%% @private A timeout `receive ... after' accepts.
-spec is_timeout(term()) -> boolean().
is_timeout(infinity) -> true;
is_timeout(Timeout) -> is_integer(Timeout) andalso Timeout >= 0 andalso Timeout =< ?MAX_TIMEOUT.

%% A reader that finds the channel empty looks a few more times, yielding in
%% between, before it parks: a stream's next term is often a microsecond away,
%% and a parked reader costs its sender a wake-up message per term.
look_again(Channel, Deadline, 0) ->
    wait_then_recv(Channel, Deadline);
look_again(Channel, Deadline, Looks) ->
    erlang:yield(),
    case try_receive(Channel) of
        {error, empty} -> look_again(Channel, Deadline, Looks - 1);
        Done -> Done
    end.

recv_until(Channel, Deadline) ->
    case try_receive(Channel) of
        {error, empty} -> wait_then_recv(Channel, Deadline);
        Done -> Done
    end.

wait_then_recv(Channel, Deadline) ->
    Tag = erlang:unique_integer([positive]),
    case py_channel_nif:wait(Channel, Tag) of
        ready ->
            recv_until(Channel, Deadline);
        {waiting, Watch} ->
            %% `Watch' monitors this process until it takes what it is woken
            %% for: should it exit before, the wake goes to another reader.
            receive
                {py_channel_ready, Tag} ->
                    case py_channel_nif:take_woken(Watch) of
                        {error, empty} -> wait_then_recv(Channel, Deadline);
                        Done -> Done
                    end
            after remaining(Deadline) ->
                give_up(Channel, Watch, Tag)
            end
    end.

%% Withdraw from the channel's readers; a wake-up that raced with the timeout
%% is collected, and the term it announced taken rather than left behind.
give_up(Channel, Watch, Tag) ->
    case py_channel_nif:cancel_wait(Watch) of
        cancelled -> ok;
        woken -> receive {py_channel_ready, Tag} -> ok after ?WAKE_IN_FLIGHT_MS -> ok end
    end,
    case try_receive(Channel) of
        {error, empty} -> {error, timeout};
        Done -> Done
    end.

deadline(infinity) -> infinity;
deadline(Timeout) -> erlang:monotonic_time(millisecond) + Timeout.

remaining(infinity) -> infinity;
remaining(Deadline) -> max(0, Deadline - erlang:monotonic_time(millisecond)).

%% @doc A request with the default timeout of 5000 milliseconds.
%% @equiv call(Channel, Request, 5000)
-spec call(channel(), term()) -> {ok, term()} | {error, timeout | closed | too_large}.
call(Channel, Request) ->
    call(Channel, Request, 5000).

%% @doc Sends `{Caller, Request}' and waits up to `Timeout' milliseconds, in
%% all, for the reply: `{ok, Reply}' once the reader answers with
%% `reply(caller, Reply)' (Python) or `reply/2' (Erlang). `Caller' stands for
%% this call; a reader written for `{Pid, Request}' and `reply(pid, term)'
%% works unchanged. The request waits for room as `send/3' does; `{error,
%% timeout}' when no reply came in time (a later reply is dropped, nothing
%% reaches the mailbox), `{error, closed}' or `{error, too_large}' when the
%% request could not be queued.
%%
%% Unlike a `send/2' followed by a `receive', the caller looks for its reply
%% for a few microseconds (the app env `await_spin') before it sleeps, so a
%% fast reader's reply does not wait for the caller's scheduler to wake up:
%% see docs/threading.md. `Timeout' is `infinity' or 0 to 4294967295;
%% anything else is a `badarg' error, raised before anything is sent. The
%% process keeps the `Caller's of its last few calls in its process dictionary,
%% and a later call reuses one that no reader holds any more.
-spec call(channel(), term(), timeout()) ->
          {ok, term()} | {error, timeout | closed | too_large}.
call(Channel, Request, Timeout) when ?IS_REMOTE(Channel) ->
    ok = py_channel_link:flush(Channel), % after what this node sent with send/2
    py_channel_remote:call(Channel, call, [Channel, Request, Timeout]);
call(Channel, Request, Timeout) ->
    is_timeout(Timeout) orelse erlang:error(badarg, [Channel, Request, Timeout]),
    Tag = erlang:unique_integer([positive]),
    Previous = previous_callers(),
    case py_channel_nif:call_send(Channel, Tag, Request, Previous) of
        {ok, Caller} ->
            keep_caller(Caller, Previous),
            await_reply(Channel, Caller, Tag, Timeout);
        {busy, _} when Timeout =:= 0 ->
            {error, timeout};
        {busy, Caller} ->
            %% The time spent waiting for room counts against the timeout.
            Deadline = deadline(Timeout),
            case send_when_room(Channel, {Caller, Request}, Deadline, ?FIRST_PARK) of
                ok -> await_reply(Channel, Caller, Tag, remaining(Deadline));
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% The callers of this process's last calls, renewed for the next one when nothing
%% else holds them (the NIF checks): a new one per call was a resource that died in
%% the process's garbage collections, hundreds at a time. A Python reader holds the
%% caller of the request it answered until the next request comes, so a few are kept.
previous_callers() ->
    case get(?LAST_CALLERS) of
        undefined -> [];
        Callers -> Callers
    end.

keep_caller(Caller, Previous) ->
    case lists:member(Caller, Previous) of
        true -> ok;
        false -> put(?LAST_CALLERS, [Caller | lists:sublist(Previous, ?CALLERS_KEPT - 1)])
    end.

%% The few microseconds of looking (py_answer) are not taken off `Timeout'.
await_reply(Channel, Caller, Tag, Timeout) ->
    case py_answer:look({call, Caller, Tag, Channel}, Timeout) of
        {message, {py_channel_reply, Tag, Reply}} ->
            {ok, Reply};
        'receive' ->
            receive
                {py_channel_reply, Tag, Reply} -> {ok, Reply}
            after Timeout ->
                    case py_channel_nif:caller_abandon(Caller) of
                        abandoned ->
                            {error, timeout};
                        sent -> % the reply is on its way: take it
                            receive {py_channel_reply, Tag, Reply} -> {ok, Reply} end;
                        {py_channel_reply, Tag, Reply} ->
                            {ok, Reply}
                    end
            end
    end.

%% @doc Answers a request of `call/3' that an Erlang reader took (`recv/2',
%% `try_receive/1'): `ok', also when the caller no longer waits (as `!' to a
%% process that has exited), or `{error, already_replied}': a caller gets one
%% reply. Not a caller: `badarg'.
-spec reply(caller(), term()) -> ok | {error, already_replied}.
reply(Caller, Reply) ->
    py_channel_nif:caller_reply(Caller, Reply).

%% @doc Subscribes the calling process to the channel: it receives the terms
%% as messages, like a socket in `{active, N}' mode, instead of calling
%% `recv/2' in a loop of its own. Messages, each with `Channel' as passed:
%% <ul>
%% <li>`{py_channel, Channel, Term}': a term taken from the channel, one per
%% unit of credit;</li>
%% <li>`{py_channel_passive, Channel}': the credit ran out (sent once, after
%% the last term it paid for); call `subscribe/2' again for more;</li>
%% <li>`{py_channel_closed, Channel}': the channel is closed and drained (seen
%% while the credit is above 0); the subscription has ended.</li>
%% </ul>
%% `Credit' is added to what is left, as `{active, N}' adds. `subscribe(Channel,
%% 0)' stops the subscription, and returns only once no further
%% `{py_channel, Channel, _}' message can arrive: terms already delivered stay
%% in the mailbox, the rest stay queued. Subscribing again after
%% `{py_channel_closed, Channel}' starts a new subscription.
%%
%% A subscription is one more reader of the channel, beside Python readers,
%% `recv/2' callers and other subscribers: each term goes to exactly one of
%% them. It holds terms for the process only as far as its credit goes; the
%% subscriber's exit ends it, and what it had not taken stays queued. A
%% small process reads for the subscriber, waiting in `receive' like
%% `recv/2'. A `Credit' that is not a non-negative integer, or a `Channel'
%% that is not a channel, is a `badarg' error.
-spec subscribe(channel(), non_neg_integer()) -> ok.
subscribe(Channel, Credit) ->
    py_channel_subscription:subscribe(Channel, Credit).

%% @doc Asks to be told if terms this node sent to `Channel' with `send/2',
%% answered `ok', may not have reached it: for a channel of another node,
%% whose terms travel in batches (see the cluster guide), the caller gets once
%% `{py_channel_down, Ref, Channel, Reason, Unconfirmed}' when the connection
%% to the owner node drops (`Reason' `noconnection') or the channel turns out
%% closed with terms on their way (`closed'): `Unconfirmed' of the terms sent
%% from this node since the link to it was made were not confirmed queued
%% (some may have been). For a channel of this node, whose sends are queued
%% before they answer, nothing is ever sent. Not a channel: `badarg'.
-spec monitor(channel()) -> reference().
monitor(Channel) when ?IS_REMOTE(Channel) ->
    py_channel_link:monitor_link(Channel);
monitor(Channel) ->
    _ = info(Channel),
    make_ref().

%% @doc Cancels `monitor/1'; a message already sent stays in the mailbox.
-spec demonitor(reference()) -> ok.
demonitor(Ref) when is_reference(Ref) ->
    py_channel_link:demonitor_link(Ref).

%% @doc The bytes `Term' counts against `max_size' and in `size': about the
%% memory it takes, as the BEAM lays it out (8 bytes a word; a binary counts
%% its length plus 16). A fun counts 64 bytes plus what it captures.
-spec term_size(term()) -> non_neg_integer().
term_size(Term) ->
    py_channel_nif:term_size(Term).

%% @doc Makes channels readable from Python code written against
%% erlang_python, through `erlang.call':
%% `_py_channel_receive(ref[, timeout_ms])' -> `(ok, Term)' or
%% `(error, closed | timeout)'; `_py_channel_try_receive(ref)';
%% `_py_channel_info(ref)'; `_py_channel_wait(ref[, timeout_ms])' -> `ok'
%% once a message or the close is there, or `(error, timeout)';
%% `_py_channel_cancel_wait(ref)' -> `ok'. Needs the application running.
%% Idempotent. (`erlang.channel.Channel' reads a channel natively and faster.)
-spec register_callbacks() -> ok.
register_callbacks() ->
    Callbacks = #{'_py_channel_receive' => fun callback_receive/1,
                  '_py_channel_try_receive' => fun([Ch]) -> try_receive(Ch) end,
                  '_py_channel_info' => fun([Ch]) -> info(Ch) end,
                  '_py_channel_wait' => fun callback_wait/1,
                  '_py_channel_cancel_wait' => fun([_Ch]) -> ok end},
    maps:foreach(fun py:register_function/2, Callbacks).

callback_receive([Ch]) -> recv(Ch, infinity);
callback_receive([Ch, Timeout]) -> recv(Ch, Timeout).

%% Waits for a message or the close without taking anything.
callback_wait([Ch]) ->
    callback_wait([Ch, infinity]);
callback_wait([Ch, Timeout]) ->
    is_timeout(Timeout) orelse erlang:error(badarg, [Ch, Timeout]),
    Tag = erlang:unique_integer([positive]),
    case py_channel_nif:wait(Ch, Tag) of
        ready ->
            ok;
        {waiting, Watch} ->
            receive
                {py_channel_ready, Tag} -> py_channel_nif:settle_wait(Watch)
            after Timeout ->
                    case py_channel_nif:cancel_wait(Watch) of
                        cancelled -> {error, timeout};
                        woken -> receive {py_channel_ready, Tag} -> ok after ?WAKE_IN_FLIGHT_MS -> ok end
                    end
            end
    end.

%% @doc Counters for the whole node: `live_channels' is the number of
%% channels whose memory is not yet freed, `python_threads' the number of
%% threads Python runs on (busy or idle), `python_jobs_running' the Python
%% calls running now (`py' calls, casts, `start_link' processes) and
%% `python_jobs_queued' those waiting for a thread (a thread is always on
%% its way: a job never waits for another to finish). docs/channel.md shows a
%% poller forwarding these and `info/1' to `telemetry'.
-spec stats() -> #{live_channels := non_neg_integer(),
                   python_threads := non_neg_integer(),
                   python_jobs_running := non_neg_integer(),
                   python_jobs_queued := non_neg_integer()}.
stats() ->
    {Threads, Running, Queued} = py_channel_nif:py_pool_counts(),
    #{live_channels => py_channel_nif:live_channels(),
      python_threads => Threads,
      python_jobs_running => Running,
      python_jobs_queued => Queued}.

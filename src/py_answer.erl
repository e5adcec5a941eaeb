%% @private
%% @doc How a process waits for one answer that is microseconds away: a
%% `py:call' result, or the reply to a `py_channel:call/3'.
%%
%% A process that sleeps in `receive' often takes its scheduler to sleep with
%% it, and the answer must then wake that thread: 5 to 30 microseconds on a
%% virtual machine (docs/threading.md). So the process first looks for the
%% answer for a moment (`await_spin', in microseconds; 0 on a node with one
%% scheduler). It looks where the answer is kept for it while it looks: a
%% `py' job's in the job's handle, inside one NIF call charged by the time it
%% took (`py_look/3'), the reply to a call, if it is small plain data, in its
%% caller, encoded (`caller_poll/1', again and again). That spares the
%% answering thread a send from outside the schedulers, most of a microsecond;
%% any other reply is sent, and looked for in the mailbox. The looks do not
%% yield: a yield between them cost a channel round trip 1-3 microseconds, and
%% 20 microseconds of looking is less than a process's time slice anyway. A
%% scheduler that looks keeps its core, though: work that no Python thread
%% has begun after ?BEGUN_WITHIN microseconds may be waiting for that very
%% core, so the process then stops looking at once. Not a `call/3' caller
%% whose channel's Python reader spins on another core, nor a `py' caller
%% whose job waits in the worker pool's handoff for a watcher on another core:
%% the OS holds such a thread up now and then (20-70 microseconds at a timer
%% tick on this project's virtual machine, a few when the VM's aux thread
%% wakes on its core), and the caller looks on for ?HELD_UP_SPINS times
%% `await_spin' (never past its timeout), for an answer sent to a sleeping
%% caller costs the VM's aux thread several wake-ups, each taking a core from
%% the caller or the Python thread (see docs/threading.md; `caller_look_on/2'
%% and `py_look_on/1' tell). A reader found spinning on the caller's own core
%% is asked to move off it; a watcher there is not (the OS's wake-ups put it
%% back: see docs/threading.md).
%% Whatever the path, it stops looking before it sleeps in `receive', so
%% that nothing is kept for a process that no longer looks. A job submitted
%% for a caller that looks at once (`py:call', `eval', `exec') is looked for
%% from its submit on, so an answer that comes before the first look is kept
%% too.
-module(py_answer).

-export([init_await_spin/0, look/2]).

-export_type([slot/0]).

-type slot() :: {job, reference()}
              | {call, py_channel:caller(), integer(), py_channel:channel()}.
%% A `py' job's handle, or a `py_channel:call/3' caller, the tag of its
%% reply, `{py_channel_reply, Tag, Reply}', and the channel of its request.

-define(AWAIT_SPIN, {?MODULE, await_spin}).
-define(DEFAULT_AWAIT_SPIN, 20).
-define(BEGUN_WITHIN, 5).
-define(HELD_UP_SPINS, 5).

%% @doc Called by the application's start: how long a waiting process looks
%% for its answer before it sleeps. The app env `await_spin' is in
%% microseconds; a node with one scheduler never looks.
-spec init_await_spin() -> ok | {error, {badarg, {await_spin, term()}}}.
init_await_spin() ->
    case application:get_env(py_channel, await_spin, ?DEFAULT_AWAIT_SPIN) of
        Micros when is_integer(Micros), Micros >= 0 ->
            Spin = case erlang:system_info(schedulers_online) of
                       1 -> 0;
                       _ -> Micros
                   end,
            persistent_term:get(?AWAIT_SPIN, undefined) =:= Spin
                orelse persistent_term:put(?AWAIT_SPIN, Spin),
            ok;
        Other ->
            {error, {badarg, {await_spin, Other}}}
    end.

%% @doc Looks for the answer of `Slot' for up to `await_spin' microseconds:
%% `{message, Message}', the answer's message as it would have come, or
%% `receive': it is in the mailbox, or will be sent there, from now on.
-spec look(slot(), timeout()) -> {message, term()} | 'receive'.
look(Slot, 0) ->
    stop_looking(Slot);
look(Slot, Timeout) ->
    case persistent_term:get(?AWAIT_SPIN, 0) of
        0 ->
            stop_looking(Slot);
        Spin ->
            Now = erlang:monotonic_time(microsecond),
            look_for(Slot, Now + ?BEGUN_WITHIN, Now + Spin, Now + held_up_spin(Spin, Timeout))
    end.

%% How long a caller whose reader is held up looks in all: never past its
%% timeout.
held_up_spin(Spin, infinity) -> ?HELD_UP_SPINS * Spin;
held_up_spin(Spin, Timeout) -> min(?HELD_UP_SPINS * Spin, max(Spin, 1000 * Timeout)).

%% A job's answer is looked for inside one NIF call, charged by the time it
%% took: a loop of polls here cost a reduction or two per turn, so a process
%% making short calls used up its time slice every 50 calls or so, and the end
%% of a slice is when its scheduler hands out deferred work (waking the VM's
%% aux thread, which then took a core for microseconds): p99 6.2-8.4 against
%% 5.6-6.0 microseconds (`make bench' table 3, A/B x4).
look_for({job, Handle} = Slot, BegunBy, Until, HeldUpUntil) ->
    %% One NIF call looks for a millisecond at most: an `await_spin' set high
    %% takes several.
    Now = erlang:monotonic_time(microsecond),
    case py_channel_nif:py_look(Handle, max(BegunBy - Now, 0), max(Until - Now, 0)) of
        not_yet ->
            %% Time is left only if the look stopped for want of a worker (then none has
            %% the job), or at its millisecond.
            case erlang:monotonic_time(microsecond) < Until andalso begun(Slot) of
                true ->
                    look_for(Slot, BegunBy, Until, HeldUpUntil);
                held_up ->
                    %% Looked for until the watcher takes it, then until the answer.
                    look_for(Slot, HeldUpUntil, max(Until, HeldUpUntil), HeldUpUntil);
                false ->
                    stop_looking(Slot)
            end;
        sent -> 'receive';
        Message -> {message, Message}
    end;
look_for(Slot, BegunBy, Until, HeldUpUntil) ->
    look(Slot, BegunBy, Until, HeldUpUntil).

%% `BegunBy' is when the work must have begun (or be about to), until it is
%% seen so; `HeldUpUntil' how long to look when its reader is held up.
look(Slot, BegunBy, Until, HeldUpUntil) ->
    case poll(Slot) of
        not_yet ->
            Now = erlang:monotonic_time(microsecond),
            if
                Now >= Until ->
                    stop_looking(Slot);
                BegunBy =/= begun, Now >= BegunBy ->
                    case begun(Slot) of
                        true ->
                            look(Slot, begun, Until, HeldUpUntil);
                        held_up ->
                            look(Slot, begun, max(Until, HeldUpUntil), HeldUpUntil);
                        false ->
                            stop_looking(Slot)
                    end;
                true ->
                    look(Slot, BegunBy, Until, HeldUpUntil)
            end;
        sent ->
            'receive';
        Message ->
            {message, Message}
    end.

stop_looking(Slot) ->
    case stop_polling(Slot) of
        not_yet -> 'receive';
        sent -> 'receive';
        Message -> {message, Message}
    end.

poll({job, Handle}) ->
    py_channel_nif:py_poll(Handle);
poll({call, Caller, Tag, _Channel}) ->
    case py_channel_nif:caller_poll(Caller) of
        %% Sent as a message (not small plain data, or from an Erlang reader):
        %% it is in the mailbox, or about to be.
        sent -> receive {py_channel_reply, Tag, _} = Reply -> Reply after 0 -> not_yet end;
        Polled -> Polled
    end.

stop_polling({job, Handle}) -> py_channel_nif:py_stop_polling(Handle);
stop_polling({call, Caller, _Tag, _Channel}) -> py_channel_nif:caller_stop_polling(Caller).

begun({job, Handle}) -> looked_on(py_channel_nif:py_look_on(Handle));
begun({call, Caller, _Tag, Channel}) -> looked_on(py_channel_nif:caller_look_on(Caller, Channel)).

looked_on(taken) -> true;
looked_on(held_up) -> held_up;
looked_on(not_taken) -> false.

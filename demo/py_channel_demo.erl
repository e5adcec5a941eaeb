%% `make demo': an Erlang producer streams records through a backpressured
%% channel to two Python workers in the embedded interpreter. Each worker
%% parses a record, aggregates it per sensor, hashes it with hashlib and
%% replies to the producer's collector. The run ends with the rate, the reply
%% latency and a check that every record was answered exactly once.
-module(py_channel_demo).

-export([main/0, main/1]).

-define(DEFAULT_RECORDS, 1000000).
-define(WORKERS, 2).
-define(MAX_SIZE, 64 * 1024).
-define(PROGRESS_EVERY, 100000).
%% Reply latency is sampled on one record in this many.
-define(LATENCY_SAMPLE, 50).

%% The Python worker: parse "sensor-N,Value", keep a total per sensor, hash
%% the record, reply. Iteration ends when the channel is closed and drained.
-define(WORKER, <<"
import hashlib
from erlang import Atom
from erlang.channel import Channel, reply

ANSWER = Atom('answer')

def worker(channel_ref):
    totals = {}
    count = 0
    for _, seq, reply_to, sent_at, payload in Channel(channel_ref):
        sensor, value = payload.split(',')
        totals[sensor] = totals.get(sensor, 0) + int(value)
        digest = hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()
        reply(reply_to, (ANSWER, seq, sent_at, digest))
        count += 1
    return (count, len(totals))
">>).

main() ->
    main(?DEFAULT_RECORDS).

main(Records) ->
    {ok, _} = application:ensure_all_started(py_channel),
    {ok, Channel} = py_channel:new(#{max_size => ?MAX_SIZE}),
    io:format("py_channel demo: ~b records -> channel (max_size ~b bytes) -> "
              "~b Python workers~n", [Records, ?MAX_SIZE, ?WORKERS]),
    {ok, Version} = py:version(),
    io:format("embedded Python ~ts~n", [hd(binary:split(Version, <<" ">>))]),
    ok = py:exec(?WORKER),
    Answered = atomics:new(Records, []),
    Collector = spawn_link(fun() -> collect(Records, Answered) end),
    Workers = [py:spawn_call('__main__', worker, [Channel]) || _ <- lists:seq(1, ?WORKERS)],
    Started = erlang:monotonic_time(microsecond),
    ok = produce(Channel, Collector, 1, Records),
    #{busy := Busy} = py_channel:info(Channel),
    ok = py_channel:close(Channel),
    Collector ! {finished, self()},
    {Latencies, Duplicates} = receive {collected, L, D} -> {L, D} end,
    Elapsed = erlang:monotonic_time(microsecond) - Started,
    WorkerCounts = [begin {ok, {Count, Sensors}} = py:await(W, 60000), {Count, Sensors} end
                    || W <- Workers],
    Missing = length([I || I <- lists:seq(1, Records), atomics:get(Answered, I) =:= 0]),
    Sorted = lists:sort(Latencies),
    io:format("~nrecords:        ~b in ~.2f s = ~b records/s~n",
              [Records, Elapsed / 1.0e6, round(Records / (Elapsed / 1.0e6))]),
    io:format("backpressure:   the producer found the channel full ~b times and waited "
              "(send/3, in a receive)~n", [Busy]),
    io:format("workers:        ~ts~n",
              [lists:join(", ", [io_lib:format("~b records, ~b sensors", [C, S])
                                 || {C, S} <- WorkerCounts])]),
    io:format("reply latency:  median ~b us, p99 ~b us (~b samples)~n",
              [percentile(Sorted, 50), percentile(Sorted, 99), length(Sorted)]),
    case {Missing, Duplicates} of
        {0, 0} ->
            io:format("exactly once:   yes, every record answered once~n");
        _ ->
            io:format("exactly once:   NO: ~b missing, ~b duplicated~n", [Missing, Duplicates]),
            halt(1)
    end.

%% Each record waits for room when the channel is full: the producer sleeps in
%% a receive until the workers have taken half of what is queued.
produce(_Channel, _Collector, Seq, Records) when Seq > Records ->
    ok;
produce(Channel, Collector, Seq, Records) ->
    Record = {record, Seq, Collector, erlang:monotonic_time(microsecond),
              <<"sensor-", (integer_to_binary(Seq rem 97))/binary, ",",
                (integer_to_binary(Seq * 7919 rem 100000))/binary>>},
    ok = py_channel:send(Channel, Record, infinity),
    produce(Channel, Collector, Seq + 1, Records).


-record(tally, {records, answered, count = 0, latencies = [], duplicates = 0,
                finished_by = none}).

collect(Records, Answered) ->
    collect(#tally{records = Records, answered = Answered}).

%% Counts answers until all are in and the producer has finished. Once the
%% producer has finished, an answer that takes over 5 s is given up on: the
%% exactly-once check then reports it missing.
collect(#tally{count = Count, records = Records, finished_by = From} = T)
  when Count >= Records, From =/= none ->
    From ! {collected, T#tally.latencies, T#tally.duplicates};
collect(#tally{finished_by = FinishedBy} = T) ->
    Patience = case FinishedBy of none -> infinity; _ -> 5000 end,
    receive
        {answer, Seq, SentAt, _Digest} ->
            collect(tally(T, Seq, SentAt));
        {finished, From} ->
            collect(T#tally{finished_by = From})
    after Patience ->
            FinishedBy ! {collected, T#tally.latencies, T#tally.duplicates}
    end.

tally(#tally{answered = Answered, count = Count, records = Records} = T, Seq, SentAt) ->
    Duplicate = case atomics:add_get(Answered, Seq, 1) of 1 -> 0; _ -> 1 end,
    Latencies = case Seq rem ?LATENCY_SAMPLE of
                    0 -> [erlang:monotonic_time(microsecond) - SentAt | T#tally.latencies];
                    _ -> T#tally.latencies
                end,
    (Count + 1) rem ?PROGRESS_EVERY =:= 0 andalso
        io:format("  ~b/~b answered~n", [Count + 1, Records]),
    T#tally{count = Count + 1, latencies = Latencies,
            duplicates = T#tally.duplicates + Duplicate}.

percentile([], _) -> 0;
percentile(Sorted, P) ->
    lists:nth(max(1, min(length(Sorted), round(length(Sorted) * P / 100))), Sorted).

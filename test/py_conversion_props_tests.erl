%% Property test of the term conversion, both ways (issue 9): generated Erlang
%% terms and generated Python objects go through every path that converts
%% (py:call arguments and results, py:spawn_call, a channel read by Python,
%% reply/erlang.send), from the NIF's own worker threads and from threads Python
%% code started (threading.Thread). Where the type table promises an exact round
%% trip the result must be `=:=' the input (for objects made in Python: the term
%% a small external-term-format writer in Python, independent of the NIF, says
%% they are); where it promises an error (colliding map keys, nesting past the
%% bound, unconvertible objects) the error must be clean: never a crash, never a
%% silent merge, and a failed erlang.send sends nothing.
%%
%% Seeded and bounded: a fixed seed by default, so `make test' runs the same
%% cases every time (about 10 s). PY_CHANNEL_PROP_SEED=<integer> runs another
%% seed, PY_CHANNEL_PROP_SEED=random picks one. The seed is printed when the
%% suite starts (a crash of the VM prints nothing after) and again by any group
%% that fails. Each group reseeds from the seed and its own name, so it fails the
%% same way when run alone. A group runs all its cases and then reports every
%% failed one. PY_CHANNEL_PROP_TRACE=1 prints each route before it runs, to
%% name the one that brings the VM down.
%%
%% Lossy by the table, so compared with their documented normal form rather
%% than themselves: the atoms undefined and nil (Python None, back as none),
%% {bytes, B} (Python bytes, back as B), Python float nan/inf (the atoms nan,
%% infinity, neg_infinity), subclasses of Python containers, int and str (their
%% base type's term). Generated map keys come from domains that never collide
%% in the other language (binary keys start "b:", atom keys "k_", float keys
%% have a fraction, no boolean or none atom keys), so every generated map must
%% round-trip; collisions are made on purpose in their own groups.
-module(py_conversion_props_tests).

-include_lib("eunit/include/eunit.hrl").

-define(DEFAULT_SEED, 20261203).
-define(SEED_VARIABLE, "PY_CHANNEL_PROP_SEED").
%% Generated terms (or objects) per route.
-define(CASES, 250).
%% MAX_DEPTH in native/py_channel_nif/src/conversion/mod.rs.
-define(MAX_DEPTH, 10000).
-define(TIMEOUT, 60000).
-define(FAILURES, {?MODULE, failures}).

-define(PYTHON, <<"
import collections, enum, math, random, struct, threading
import erlang
from erlang import Atom
from erlang.channel import Channel, reply


def identity(x):
    return x


def summary(x):
    return repr(x)[:300]


def type_and_value(x):
    return (type(x).__name__, x)


def on_threads(name, arg_lists):
    # globals()[name](*args) on a threading.Thread per args, all at once; their results.
    function = globals()[name]
    results = [None] * len(arg_lists)
    errors = []
    def run(i, args):
        try:
            results[i] = function(*args)
        except BaseException as error:
            errors.append(error)
    threads = [threading.Thread(target=run, args=(i, tuple(args)))
               for i, args in enumerate(arg_lists)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def on_thread(name, *args):
    return on_threads(name, [args])[0]


def raised(error):
    return (Atom('raised'), Atom(type(error).__name__), str(error))


def try_send(pid, tag, i, item):
    # Sends (tag, i, ('ok', item)), or (tag, i, ('raised', Name, Text)) if item does not convert.
    try:
        erlang.send(pid, (tag, i, (Atom('ok'), item)))
    except Exception as error:
        erlang.send(pid, (tag, i, raised(error)))


def echo(ref, pid, tag, n, mode):
    # Reads n messages and replies (tag, i, ('ok', message)) for each, or ('ok', repr)
    # in the summary modes, or ('raised', Name, Text) when the read raises. The
    # summary_bytes mode reads with binary='bytes'.
    channel = Channel(ref, binary='bytes' if mode == 'summary_bytes' else 'auto')
    for i in range(n):
        try:
            message = channel.receive(60)
            got = (Atom('ok'), message if mode == 'value' else summary(message))
        except Exception as error:
            got = raised(error)
        try:
            reply(pid, (tag, i, got))
        except Exception as error:
            reply(pid, (tag, i, (Atom('reply_raised'),) + raised(error)[1:]))
    return n


def send_each(pid, tag, items):
    for i, item in enumerate(items):
        try_send(pid, tag, i, item)
    return len(items)


def send_evaluated(pid, tag, sources):
    for i, source in enumerate(sources):
        try:
            value = eval(source)
        except Exception as error:
            erlang.send(pid, (tag, i, (Atom('eval_raised'),) + raised(error)[1:]))
            continue
        try_send(pid, tag, i, value)
    return len(sources)


def send_and_report(pid, source):
    # Sends one object that does not convert; what erlang.send raised.
    value = eval(source)
    try:
        erlang.send(pid, value)
        return Atom('sent')
    except Exception as error:
        return raised(error)


def nested(kind, depth):
    # depth levels around []; 'mixed' takes list, tuple, map by level % 3, as nest/3 in Erlang.
    value = []
    for level in range(1, depth + 1):
        shape = kind if kind != 'mixed' else ('list', 'tuple', 'map')[level % 3]
        if shape == 'list':
            value = [value]
        elif shape == 'tuple':
            value = (value,)
        else:
            value = {'k': value}
    return value


def send_nested(pid, tag, cases):
    for i, (kind, depth) in enumerate(cases):
        try_send(pid, tag, i, nested(kind, depth))
    return len(cases)


def big_key(i):
    r = i % 4
    return i if r == 0 else 's%d' % i if r == 1 else (i, 't') if r == 2 else i + 0.5


def big_dict(n, kind):
    if kind == 'int':
        return {i: i for i in range(n)}
    return {big_key(i): (i,) for i in range(n)}


def send_big_dicts(pid, tag, sizes, kind):
    for i, n in enumerate(sizes):
        try_send(pid, tag, i, big_dict(n, kind))
    return len(sizes)


def bignums():
    return [0, 255, 256, -256, 2 ** 31 - 1, 2 ** 31, -2 ** 31 - 1, 2 ** 59, 2 ** 60 - 1,
            2 ** 63 - 1, 2 ** 63, -2 ** 63, -2 ** 63 - 1, 2 ** 64 - 1, 2 ** 64, -2 ** 64,
            2 ** 2040 - 1, 2 ** 2040, -2 ** 2048 + 1, 3 ** 5000, -7 ** 3000, 2 ** (2 ** 20) - 1]


def make_atoms(names):
    return [Atom(name) for name in names] + [{Atom(name): i for i, name in enumerate(names)}]


def send_atoms(pid, tag, names):
    try_send(pid, tag, 0, make_atoms(names))
    return 1


# Generated objects and their expected terms. The oracle writes the external term
# format itself (no conversion code involved); a pool object (pid, ref, channel,
# opaque term from Erlang) is written as ('$pool', Index) for Erlang to put back.

EDGE_INTEGERS = [0, 1, -1, 255, 256, -256, 2 ** 27, 2 ** 31 - 1, 2 ** 31, -2 ** 31,
                 -2 ** 31 - 1, 2 ** 59 - 1, 2 ** 59, -2 ** 59, 2 ** 63 - 1, 2 ** 63, -2 ** 63,
                 -2 ** 63 - 1, 2 ** 64 - 1, 2 ** 64, -2 ** 64, 2 ** 2040 - 1, 2 ** 2040]
EDGE_FLOATS = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
               -1.7976931348623157e308, 0.1, 1e15 + 0.3,
               float('nan'), float('inf'), float('-inf')]
ATOM_NAMES = ['', 'ok', 'error', 'request', 'Mixed Case', 'with space', chr(0xe9), chr(0xff),
              'nan', 'infinity', 'neg_infinity', 'None', 'True', 'a' * 255]
KEY_ATOMS = ['k_ok', 'k_request', 'k_' + chr(0xe9)]
CHAR_RANGES = [(0x20, 0x7e), (0x00, 0x1f), (0xa0, 0xff), (0x100, 0xd7ff), (0xe000, 0xfffd),
               (0x10000, 0x10ffff)]
Point = collections.namedtuple('Point', 'x y')


class Colour(enum.IntEnum):
    RED = 1
    HUGE = 2 ** 70


class Text(str):
    pass


class Items(list):
    pass


class Objects:
    def __init__(self, seed, pool):
        self.rng = random.Random(seed)
        self.pool = list(pool)
        self.keys = [item for item in self.pool if hashable(item)]

    def size(self):
        rng = self.rng
        if rng.random() < 0.97:
            return rng.choice([0, 1, 2, 3, 7, 8, 31, 64, 65, 100, 255, 256, 1000])
        return rng.choice([4096, 65536])

    def text(self, n):
        rng = self.rng
        if n > 256:
            return (self.text(256) * (n // 256 + 1))[:n]
        if rng.random() < 0.4:
            return ''.join(chr(rng.randint(0x20, 0x7e)) for _ in range(n))
        return ''.join(chr(rng.randint(*rng.choice(CHAR_RANGES))) for _ in range(n))

    def integer(self):
        rng = self.rng
        k = rng.randrange(3)
        if k == 0:
            return rng.randint(-1000, 1000)
        if k == 1:
            return rng.choice(EDGE_INTEGERS)
        value = rng.getrandbits(rng.randint(65, 4000))
        return -value if rng.random() < 0.5 else value

    def float(self):
        rng = self.rng
        k = rng.randrange(3)
        if k == 0:
            return rng.choice(EDGE_FLOATS)
        if k == 1:
            return rng.uniform(-1e6, 1e6)
        return rng.random() * 10.0 ** rng.randint(-300, 300) * rng.choice([1, -1])

    def scalar(self):
        rng = self.rng
        k = rng.randrange(14)
        if k == 0:
            return None
        if k == 1:
            return rng.random() < 0.5
        if k in (2, 3):
            return self.integer()
        if k == 4:
            return self.float()
        if k in (5, 6):
            return self.text(self.size())
        if k == 7:
            return rng.randbytes(self.size())
        if k == 8:
            return bytearray(rng.randbytes(self.size()))
        if k == 9:
            return Atom(rng.choice(ATOM_NAMES))
        if k == 10 and self.pool:
            return rng.choice(self.pool)
        if k == 11:
            return rng.choice([Colour.RED, Colour.HUGE])
        if k == 12:
            return Text(self.text(rng.randrange(10)))
        return self.integer()

    def key(self, depth=2):
        rng = self.rng
        k = rng.randrange(8 if depth > 0 else 7)
        if k == 0:
            return rng.randint(-1000, 1000)
        if k == 1:
            return self.integer()
        if k == 2:
            return rng.randint(-1000, 1000) + 0.5
        if k == 3:
            return 's:' + self.text(rng.randrange(8))
        if k == 4:
            return b'b:' + rng.randbytes(rng.randrange(8))
        if k == 5:
            return Atom(rng.choice(KEY_ATOMS))
        if k == 6:
            return rng.choice(self.keys) if self.keys else 0
        return tuple(self.key(depth - 1) for _ in range(rng.randrange(3)))

    def value(self, depth):
        rng = self.rng
        if depth <= 0 or rng.random() < 0.4:
            return self.scalar()
        n = rng.randrange(6) if rng.random() < 0.9 else rng.randrange(40)
        k = rng.randrange(7)
        if k == 0:
            return [self.value(depth - 1) for _ in range(n)]
        if k == 1:
            return tuple(self.value(depth - 1) for _ in range(n))
        if k == 2:
            return {self.key(): self.value(depth - 1) for _ in range(n)}
        if k == 3:
            return Point(self.value(depth - 1), self.value(depth - 1))
        if k == 4:
            return collections.OrderedDict((self.key(), self.value(depth - 1)) for _ in range(n))
        if k == 5:
            return Items(self.value(depth - 1) for _ in range(n))
        return (Atom('tag'), self.value(depth - 1))


def hashable(item):
    try:
        hash(item)
        return True
    except TypeError:
        return False


def objects(seed, count, pool):
    generate = Objects(seed, pool)
    return [with_etf(generate.value(5), pool) for _ in range(count)]


def send_objects(pid, tag, seed, count, pool):
    generate = Objects(seed, pool)
    for i in range(count):
        try_send(pid, tag, i, with_etf(generate.value(5), pool))
    return count


def sized_objects(seed, sizes):
    rng = random.Random(seed)
    made = []
    for n in sizes:
        made.append(rng.randbytes(n))
        made.append(bytearray(rng.randbytes(n)))
        made.append(''.join(chr(rng.randint(0x20, 0x7e)) for _ in range(min(n, 4096))) * max(1, n // 4096))
        made.append(''.join(chr(rng.randint(*rng.choice(CHAR_RANGES))) for _ in range(min(n, 1024))) * max(1, n // 4096))
    return [with_etf(x, []) for x in made]


def send_sized_objects(pid, tag, seed, sizes):
    return send_each(pid, tag, sized_objects(seed, sizes))


def with_etf(value, pool):
    return (value, etf(value, pool))


def etf(value, pool):
    out = bytearray([131])
    encode(value, out, {id(item): i for i, item in enumerate(pool)})
    return bytes(out)


def encode(x, out, pool):
    # In the order the conversion tests types: bool before int, Atom before str.
    if id(x) in pool:
        out += bytes([104, 2])
        encode_atom('$pool', out)
        encode_int(pool[id(x)], out)
    elif x is None:
        encode_atom('none', out)
    elif isinstance(x, bool):
        encode_atom('true' if x else 'false', out)
    elif isinstance(x, int):
        encode_int(int(x), out)
    elif isinstance(x, float):
        if math.isnan(x):
            encode_atom('nan', out)
        elif math.isinf(x):
            encode_atom('infinity' if x > 0 else 'neg_infinity', out)
        else:
            out += bytes([70]) + struct.pack('>d', x)
    elif isinstance(x, Atom):
        encode_atom(str(x), out)
    elif isinstance(x, str):
        encode_binary(x.encode('utf-8'), out)
    elif isinstance(x, (bytes, bytearray)):
        encode_binary(bytes(x), out)
    elif isinstance(x, list):
        if x:
            out += bytes([108]) + struct.pack('>I', len(x))
            for item in x:
                encode(item, out, pool)
        out.append(106)
    elif isinstance(x, tuple):
        out += bytes([104, len(x)]) if len(x) < 256 else bytes([105]) + struct.pack('>I', len(x))
        for item in x:
            encode(item, out, pool)
    elif isinstance(x, dict):
        out += bytes([116]) + struct.pack('>I', len(x))
        for key, item in x.items():
            encode(key, out, pool)
            encode(item, out, pool)
    else:
        raise TypeError('no oracle for ' + type(x).__name__)


def encode_atom(name, out):
    text = name.encode('utf-8')
    out += bytes([119, len(text)]) if len(text) < 256 else bytes([118]) + struct.pack('>H', len(text))
    out += text


def encode_int(value, out):
    if 0 <= value < 256:
        out += bytes([97, value])
    elif -2 ** 31 <= value < 2 ** 31:
        out += bytes([98]) + struct.pack('>i', value)
    else:
        magnitude = abs(value)
        digits = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, 'little')
        sign = 1 if value < 0 else 0
        if len(digits) < 256:
            out += bytes([110, len(digits), sign])
        else:
            out += bytes([111]) + struct.pack('>IB', len(digits), sign)
        out += digits


def encode_binary(data, out):
    out += bytes([109]) + struct.pack('>I', len(data)) + data
">>).

%% ---------------------------------------------------------------------------
%% The groups, each its own test so a failure names it. Groups that crash the
%% VM on a broken build run last, so the others report first.

props_test_() ->
    {setup, fun setup/0,
     [group(erlang_terms_round_trip_on_workers, fun erlang_terms_round_trip_on_workers/1),
      group(erlang_terms_round_trip_on_python_threads,
            fun erlang_terms_round_trip_on_python_threads/1),
      group(binaries_of_every_size, fun binaries_of_every_size/1),
      group(bignums_both_ways, fun bignums_both_ways/1),
      group(python_objects_on_workers, fun python_objects_on_workers/1),
      group(python_objects_on_python_threads, fun python_objects_on_python_threads/1),
      group(atoms_made_in_python, fun atoms_made_in_python/1),
      group(colliding_keys_from_erlang, fun colliding_keys_from_erlang/1),
      group(colliding_keys_from_python, fun colliding_keys_from_python/1),
      group(failed_send_sends_nothing, fun failed_send_sends_nothing/1),
      group(big_maps_from_erlang, fun big_maps_from_erlang/1),
      group(big_dicts_from_python, fun big_dicts_from_python/1),
      group(colliding_keys_in_big_maps, fun colliding_keys_in_big_maps/1),
      group(deep_nesting_within_bound, fun deep_nesting_within_bound/1),
      group(deep_nesting_beyond_bound, fun deep_nesting_beyond_bound/1)]}.

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    Seed = seed(),
    persistent_term:put({?MODULE, seed}, Seed),
    io:format(user, "~n~s: seed ~p (~s=~p reruns it)~n",
              [?MODULE, Seed, ?SEED_VARIABLE, Seed]),
    ok.

-spec seed() -> integer().
seed() ->
    case os:getenv(?SEED_VARIABLE) of
        false -> ?DEFAULT_SEED;
        "" -> ?DEFAULT_SEED;
        "random" -> erlang:phash2({os:system_time(), make_ref()}, 1 bsl 32);
        Text ->
            try list_to_integer(string:trim(Text))
            catch error:badarg -> error({bad_seed, ?SEED_VARIABLE, Text})
            end
    end.

group(Name, Body) ->
    {timeout, 120, {atom_to_list(Name), fun() -> run_group(Name, Body) end}}.

%% Runs one group with its own random stream and the Python helpers in the
%% calling process's namespace. Failed checks are gathered, so one run shows
%% every case of the group that fails (the first few in full); on failure it
%% says how to rerun.
-spec run_group(atom(), fun((integer()) -> term())) -> ok.
run_group(Name, Body) ->
    Seed = persistent_term:get({?MODULE, seed}),
    _ = rand:seed(exsss, {Seed, erlang:phash2(Name), 16#5eed}),
    put(?FAILURES, []),
    ok = py:exec(?PYTHON),
    try
        _ = Body(Seed),
        case lists:reverse(get(?FAILURES)) of
            [] -> ok;
            Failures ->
                io:format(user, "~n~s: ~s: ~p failed cases~n", [?MODULE, Name, length(Failures)]),
                [io:format(user, "  ~ts~n", [one_line(F)]) || F <- lists:sublist(Failures, 60)],
                error({property_failed, Name, {failed_cases, length(Failures)},
                       {first, lists:sublist(Failures, 8)}})
        end
    catch Class:Reason:Stack ->
        io:format(user, "~n~s: ~s failed with seed ~p; rerun with ~s=~p~n",
                  [?MODULE, Name, Seed, ?SEED_VARIABLE, Seed]),
        erlang:raise(Class, Reason, Stack)
    end.

%% ---------------------------------------------------------------------------
%% Erlang -> Python -> Erlang

erlang_terms_round_trip_on_workers(_Seed) ->
    Ctx = context(),
    Terms = [term(Ctx, 5) || _ <- lists:seq(1, ?CASES)],
    %% Arguments and results of py:call, one call per term.
    each(fun(I, T) -> expect({call, I, T}, {ok, normalise(T)}, call(identity, [T])) end, Terms),
    %% Many spawn_calls at once, on however many workers the pool runs.
    trace(spawn_call),
    Pending = [py:spawn_call('__main__', identity, [T]) || T <- Terms],
    each(fun(I, {T, P}) -> expect({spawn_call, I, T}, {ok, normalise(T)}, py:await(P, ?TIMEOUT)) end,
         lists:zip(Terms, Pending)),
    %% A channel read on a worker, each message answered with reply/2.
    check_echoed(channel_worker, Terms, echo(worker, value, Terms)).

erlang_terms_round_trip_on_python_threads(_Seed) ->
    Ctx = context(),
    Terms = [term(Ctx, 5) || _ <- lists:seq(1, ?CASES)],
    %% Two Python threads, each reading its own channel and replying.
    check_echoed(channel_threads, Terms, echo({threads, 2}, value, Terms)),
    %% Converted in on a worker, sent back from a Python thread.
    Tag = make_ref(),
    {ok, _} = call(on_thread, [<<"send_each">>, self(), Tag, Terms]),
    check_echoed(send_from_thread, Terms, collect(Tag, length(Terms))).

binaries_of_every_size(_Seed) ->
    Sizes = [0, 1, 2, 3, 7, 8, 15, 16, 63, 64, 65, 127, 128, 255, 256, 1023, 1024, 4095, 4096,
             65535, 65536, 65537, rand:uniform(1 bsl 20), (1 bsl 20) - 1, 1 bsl 20],
    Binaries = lists:append([[ascii(N), utf8(N), not_utf8(N)] || N <- Sizes]),
    Parts = [binary:part(B, 1, byte_size(B) - 2) || B <- Binaries, byte_size(B) > 2],
    All = Binaries ++ Parts,
    %% str when valid UTF-8, else bytes, and back unchanged.
    each(fun(I, B) ->
                 Type = case unicode:characters_to_binary(B) of
                            B -> <<"str">>;
                            _ -> <<"bytes">>
                        end,
                 expect({typed_call, I, byte_size(B)}, {ok, {Type, B}}, call(type_and_value, [B]))
         end, All),
    each(fun(I, B) ->
                 expect({forced_bytes, I, byte_size(B)}, {ok, {<<"bytes">>, B}},
                        call(type_and_value, [{bytes, B}]))
         end, Binaries),
    check_echoed(channel_worker, All, echo(worker, value, All)),
    check_echoed(channel_threads, All, echo({threads, 2}, value, All)),
    %% Made in Python: bytes, bytearray and str of many sizes.
    Seed = rand:uniform(1 bsl 30),
    PySizes = [0, 1, 2, 255, 256, 4096, 65536, 1 bsl 20],
    {ok, Made} = call(sized_objects, [Seed, PySizes]),
    check_oracle(sized_result, [], Made),
    Tag = make_ref(),
    {ok, _} = call(on_thread, [<<"send_sized_objects">>, self(), Tag, Seed, PySizes]),
    check_oracle(sized_from_thread, [], unwrap(collect(Tag, length(Made)))).

bignums_both_ways(_Seed) ->
    Expected = [0, 255, 256, -256, 1 bsl 31 - 1, 1 bsl 31, -(1 bsl 31) - 1, 1 bsl 59,
                1 bsl 60 - 1, 1 bsl 63 - 1, 1 bsl 63, -(1 bsl 63), -(1 bsl 63) - 1,
                1 bsl 64 - 1, 1 bsl 64, -(1 bsl 64), 1 bsl 2040 - 1, 1 bsl 2040,
                -(1 bsl 2048) + 1, power(3, 5000), -power(7, 3000), (1 bsl (1 bsl 20)) - 1],
    Random = [bignum() || _ <- lists:seq(1, 50)],
    expect(made_in_python, {ok, Expected}, call(bignums, [])),
    expect(edges_round_trip, {ok, Expected}, call(identity, [Expected])),
    expect(equal_in_python, {ok, true},
           eval(<<"x == bignums()">>, #{x => Expected})),
    expect(round_trip, {ok, Random}, call(identity, [Random])),
    Tag = make_ref(),
    {ok, _} = call(on_thread, [<<"send_each">>, self(), Tag, [Expected, Random]]),
    expect(from_thread, [{ok, Expected}, {ok, Random}], collect(Tag, 2)).

%% ---------------------------------------------------------------------------
%% Python -> Erlang

python_objects_on_workers(Seed) ->
    Pool = pool(),
    {ok, Pairs} = call(objects, [route_seed(Seed, result), ?CASES, Pool]),
    check_oracle(result, Pool, Pairs),
    Tag = make_ref(),
    {ok, _} = call(send_objects, [self(), Tag, route_seed(Seed, send), ?CASES, Pool]),
    check_oracle(send_on_worker, Pool, unwrap(collect(Tag, ?CASES))).

python_objects_on_python_threads(Seed) ->
    Pool = pool(),
    Lanes = [{N, make_ref()} || N <- [1, 2]],
    {ok, _} = call(on_threads, [<<"send_objects">>,
                                [[self(), Tag, route_seed(Seed, {thread, N}), ?CASES, Pool]
                                 || {N, Tag} <- Lanes]]),
    [check_oracle({send_on_thread, N}, Pool, unwrap(collect(Tag, ?CASES))) || {N, Tag} <- Lanes].

%% An erlang.Atom whose name is not yet an atom, outside Latin-1 too, alone
%% and as a dict key.
atoms_made_in_python(_Seed) ->
    [begin
         Got = case Route of
                   result ->
                       call(make_atoms, [[Name]]);
                   thread ->
                       Tag = make_ref(),
                       {ok, _} = call(on_thread, [<<"send_atoms">>, self(), Tag, [Name]]),
                       hd(collect(Tag, 1))
               end,
         Atom = binary_to_atom(Name, utf8),
         expect({Route, Kind}, {ok, [Atom, #{Atom => 0}]}, Got)
     end || Route <- [result, thread], {Kind, Name} <- fresh_atom_names()].

%% ---------------------------------------------------------------------------
%% Keys that collide in the other language: an error naming both, never a merge.

colliding_keys_from_erlang(_Seed) ->
    Fixed = [{#{<<"b">> => 1, b => 2}, [<<"<<\"b\">>">>, <<"'b'">>, <<"\"b\"">>],
              [<<"b">>, <<"Atom('b')">>]},
             {#{1 => a, 1.0 => b}, [<<"1">>], [<<"1.0">>]},
             {#{true => a, 1 => b}, [<<"true">>, <<"True">>], [<<"1">>]},
             {#{false => a, 0 => b}, [<<"false">>, <<"False">>], [<<"0">>]},
             {#{undefined => a, nil => b}, [<<"undefined">>], [<<"nil">>]},
             {#{none => a, undefined => b}, [<<"none">>], [<<"undefined">>]},
             {#{{1, x} => a, {1.0, x} => b}, [<<"{1,x}">>, <<"(1, Atom('x'))">>],
              [<<"{1.0,x}">>, <<"(1.0, Atom('x'))">>]},
             %% Not UTF-8, so bytes either way.
             {#{<<255>> => a, {bytes, <<255>>} => b}, [<<"<<255>>">>, <<"b'\\xff'">>],
              [<<"{bytes,<<255>>}">>, <<"b'\\xff'">>]}],
    Ctx = context(),
    Random = [random_erlang_collision(Ctx) || _ <- lists:seq(1, 40)],
    %% {Term, the colliding keys (for the failure report), spellings of each}
    Cases = [{M, maps:keys(M), S1, S2} || {M, S1, S2} <- Fixed] ++ Random,
    Terms = [T || {T, _, _, _} <- Cases],
    %% py:call arguments, on a worker.
    each(fun(I, {T, Keys, S1, S2}) ->
                 expect_collision({call, I, Keys}, S1, S2, call(summary, [T]))
         end, Cases),
    %% A channel read on a worker and on Python threads; the channel stays usable.
    [each(fun(I, {{_, Keys, S1, S2}, Got}) ->
                  expect_collision({Where, I, Keys}, S1, S2, as_error(Got))
          end, lists:zip(Cases, echo(Where, summary, Terms)))
     || Where <- [worker, {threads, 2}]],
    %% A reader made with binary='bytes': a binary and {bytes, B} are one key.
    Bytes = [{#{<<"a">> => 1, {bytes, <<"a">>} => 2}, <<"a">>},
             {[#{<<"k">> => 1, {bytes, <<"k">>} => 2}], <<"k">>}],
    [each(fun(I, {{_, Text}, Got}) ->
                  Python = <<"b'", Text/binary, "'">>,
                  expect_collision({Where, bytes_reader, I},
                                   [<<"<<\"", Text/binary, "\">>">>, Python],
                                   [<<"{bytes,<<\"", Text/binary, "\">>}">>, Python], as_error(Got))
          end, lists:zip(Bytes, echo(Where, summary_bytes, [T || {T, _} <- Bytes])))
     || Where <- [worker, {threads, 1}]],
    ok.

colliding_keys_from_python(_Seed) ->
    Cases = [{<<"{None: 1, Atom('none'): 2}">>, [<<"None">>], [<<"Atom('none')">>, <<"'none'">>]},
             {<<"{b'a': 1, 'a': 2}">>, [<<"b'a'">>], [<<"'a'">>]},
             {<<"{True: 1, Atom('true'): 2}">>, [<<"True">>], [<<"Atom('true')">>, <<"'true'">>]},
             {<<"{False: 1, Atom('false'): 2}">>, [<<"False">>],
              [<<"Atom('false')">>, <<"'false'">>]},
             {<<"{float('nan'): 1, Atom('nan'): 2}">>, [<<"nan">>], [<<"Atom('nan')">>, <<"'nan'">>]},
             {<<"{float('nan'): 1, float('nan'): 2}">>, [<<"nan">>], [<<"nan">>]},
             {<<"{float('inf'): 1, Atom('infinity'): 2}">>, [<<"inf">>],
              [<<"Atom('infinity')">>, <<"'infinity'">>]},
             {<<"{('x',): 1, (b'x',): 2}">>, [<<"('x',)">>], [<<"(b'x',)">>]},
             {<<"{Text('t'): 1, b't': 2}">>, [<<"b't'">>], [<<"'t'">>]},
             {<<"[1, {'k': ({b'a': 1, 'a': 2},)}]">>, [<<"b'a'">>], [<<"'a'">>]}],
    %% py:eval results, on a worker.
    each(fun(I, {Source, S1, S2}) ->
                 expect_collision({eval, I, Source}, S1, S2, eval(Source, #{}))
         end, Cases),
    %% erlang.send on a worker and on a Python thread.
    Sources = [S || {S, _, _} <- Cases],
    [begin
         Tag = make_ref(),
         {ok, _} = case Where of
                       worker -> call(send_evaluated, [self(), Tag, Sources]);
                       thread -> call(on_thread, [<<"send_evaluated">>, self(), Tag, Sources])
                   end,
         each(fun(I, {{Source, S1, S2}, Got}) ->
                      Result = as_error(Got),
                      expect_collision({Where, I, Source}, S1, S2, Result)
              end, lists:zip(Cases, collect(Tag, length(Cases))))
     end || Where <- [worker, thread]],
    ok.

%% erlang.send of something that does not convert raises, and sends nothing.
failed_send_sends_nothing(_Seed) ->
    Sources = [<<"{1, 2}">>, <<"[[object()]]">>, <<"{b'a': 1, 'a': 2}">>,
               <<"{None: 1, Atom('none'): 2}">>, <<"nested('list', 20000)">>],
    [begin
         flush(),
         Got = case Where of
                   worker -> call(send_and_report, [self(), Source]);
                   thread -> call(on_thread, [<<"send_and_report">>, self(), Source])
               end,
         case Got of
             {ok, {raised, _, _}} -> ok;
             _ -> fail({Where, Source}, [{expected, "{ok, {raised, Name, Text}}"}, {got, show(Got)}])
         end,
         Stray = receive Message -> {stray_message, Message} after 100 -> none end,
         expect({Where, Source, mailbox}, none, Stray)
     end || Where <- [worker, thread], Source <- Sources,
            %% Deep nesting on Python threads is deep_nesting_beyond_bound's business.
            not (Where =:= thread andalso binary:match(Source, <<"nested">>) =/= nomatch)],
    ok.

flush() ->
    receive _ -> flush() after 0 -> ok end.

%% ---------------------------------------------------------------------------
%% Big maps: more than 32 keys is a hash map in Erlang, more than 128 is where
%% building one from sorted arrays needs a scheduler.

big_maps_from_erlang(_Seed) ->
    Sizes = [0, 1, 32, 33, 127, 128, 129, 130, 255, 256, 1000, 10000],
    Maps = [big_map(N) || N <- Sizes] ++ [[big_map(200), #{nested => big_map(300)}]],
    each(fun(I, M) -> expect({call, I, map_size_of(M)}, {ok, M}, call(identity, [M])) end, Maps),
    check_echoed(channel_worker, Maps, echo(worker, value, Maps)),
    check_echoed(channel_threads, Maps, echo({threads, 2}, value, Maps)),
    Million = int_map(1000000),
    expect({call, 1000000}, {ok, Million}, call(identity, [Million])).

big_dicts_from_python(_Seed) ->
    Sizes = [0, 1, 32, 33, 127, 128, 129, 130, 255, 256, 1000, 10000],
    each(fun(I, N) ->
                 expect({result, I, N}, {ok, big_map(N)}, call(big_dict, [N, mixed]))
         end, Sizes),
    [begin
         Tag = make_ref(),
         Args = [self(), Tag, Sizes, mixed],
         {ok, _} = case Where of
                       worker -> call(send_big_dicts, Args);
                       thread -> call(on_thread, [<<"send_big_dicts">> | Args])
                   end,
         each(fun(I, {N, Got}) -> expect({Where, I, N}, {ok, big_map(N)}, Got) end,
              lists:zip(Sizes, collect(Tag, length(Sizes))))
     end || Where <- [worker, thread]],
    Million = int_map(1000000),
    expect({result, 1000000}, {ok, Million}, call(big_dict, [1000000, int])),
    Tag = make_ref(),
    {ok, _} = call(on_thread, [<<"send_big_dicts">>, self(), Tag, [1000000], int]),
    expect({thread, 1000000}, [{ok, Million}], collect(Tag, 1)).

colliding_keys_in_big_maps(_Seed) ->
    Maps = [maps:merge(big_map(N), #{<<"b">> => 1, b => 2}) || N <- [200, 5000]],
    S1 = [<<"<<\"b\">>">>, <<"'b'">>, <<"\"b\"">>],
    S2 = [<<"b">>, <<"Atom('b')">>],
    each(fun(I, M) -> expect_collision({call, I}, S1, S2, call(summary, [M])) end, Maps),
    [each(fun(I, Got) ->
                  Result = as_error(Got),
                  expect_collision({Where, I}, S1, S2, Result)
          end, echo(Where, summary, Maps))
     || Where <- [worker, {threads, 1}]],
    Source = <<"big_dict(n, 'mixed') | {None: 1, Atom('none'): 2}">>,
    P1 = [<<"None">>],
    P2 = [<<"Atom('none')">>, <<"'none'">>],
    [expect_collision({eval, N}, P1, P2, eval(Source, #{n => N})) || N <- [200, 5000]],
    Sources = [<<"big_dict(200, 'mixed') | {None: 1, Atom('none'): 2}">>,
               <<"big_dict(5000, 'mixed') | {None: 1, Atom('none'): 2}">>],
    [begin
         Tag = make_ref(),
         {ok, _} = case Where of
                       worker -> call(send_evaluated, [self(), Tag, Sources]);
                       thread -> call(on_thread, [<<"send_evaluated">>, self(), Tag, Sources])
                   end,
         each(fun(I, Got) ->
                      Result = as_error(Got),
                      expect_collision({Where, I}, P1, P2, Result)
              end, collect(Tag, length(Sources)))
     end || Where <- [worker, thread]],
    ok.

%% ---------------------------------------------------------------------------
%% Nesting: exact within the bound, a clean ValueError past it, on every kind of
%% thread.

deep_nesting_within_bound(_Seed) ->
    Depths = [5000, ?MAX_DEPTH - 10],
    Kinds = [list, tuple, map, mixed],
    %% Erlang -> Python -> Erlang.
    Terms = [nest(Kind, D, k) || Kind <- Kinds, D <- Depths],
    each(fun(I, T) -> expect({call, I}, {ok, T}, call(identity, [T])) end, Terms),
    check_echoed(channel_worker, Terms, echo(worker, value, Terms)),
    check_echoed(channel_thread, Terms, echo({threads, 1}, value, Terms)),
    %% Made in Python.
    Cases = [{Kind, D} || Kind <- Kinds, D <- Depths],
    Expected = [nest(Kind, D, <<"k">>) || {Kind, D} <- Cases],
    PyCases = [[atom_to_binary(Kind), D] || {Kind, D} <- Cases],
    each(fun(I, {[Kind, D], E}) ->
                 expect({result, I, Kind, D}, {ok, E}, call(nested, [Kind, D]))
         end, lists:zip(PyCases, Expected)),
    [begin
         Tag = make_ref(),
         {ok, _} = case Where of
                       worker -> call(send_nested, [self(), Tag, PyCases]);
                       thread -> call(on_thread, [<<"send_nested">>, self(), Tag, PyCases])
                   end,
         each(fun(I, {E, Got}) -> expect({Where, I, lists:nth(I, Cases)}, {ok, E}, Got) end,
              lists:zip(Expected, collect(Tag, length(Cases))))
     end || Where <- [worker, thread]],
    ok.

deep_nesting_beyond_bound(_Seed) ->
    Depths = [?MAX_DEPTH + 10, 20000, 100000],
    Kinds = [list, tuple, map, mixed],
    Terms = [nest(Kind, D, k) || Kind <- Kinds, D <- Depths],
    each(fun(I, T) -> expect_too_deep({call, I}, call(identity, [T])) end, Terms),
    [each(fun(I, Got) -> expect_too_deep({Where, I}, Got) end, echo(Where, value, Terms))
     || Where <- [worker, {threads, 1}]],
    PyCases = [[atom_to_binary(Kind), D] || Kind <- Kinds, D <- Depths],
    each(fun(I, [Kind, D]) -> expect_too_deep({result, I, Kind, D}, call(nested, [Kind, D])) end,
         PyCases),
    [begin
         Tag = make_ref(),
         {ok, _} = case Where of
                       worker -> call(send_nested, [self(), Tag, PyCases]);
                       thread -> call(on_thread, [<<"send_nested">>, self(), Tag, PyCases])
                   end,
         each(fun(I, Got) -> expect_too_deep({Where, I, lists:nth(I, PyCases)}, Got) end,
              collect(Tag, length(PyCases)))
     end || Where <- [worker, thread]],
    %% Still alive and converting.
    expect(alive_after, {ok, [1, {2}]}, call(identity, [[1, {2}]])).

%% ---------------------------------------------------------------------------
%% Routes

-spec call(atom(), list()) -> {ok, term()} | {error, term()}.
call(Function, Args) ->
    trace({call, Function, case Args of [Name | _] when is_binary(Name) -> Name; _ -> [] end}),
    py:call('__main__', Function, Args, #{}, ?TIMEOUT).

-spec eval(binary(), map()) -> {ok, term()} | {error, term()}.
eval(Source, Locals) ->
    trace({eval, Source}),
    py:eval(Source, Locals, ?TIMEOUT).

%% With PY_CHANNEL_PROP_TRACE set, each route is printed before it runs: a
%% crash of the VM prints nothing after, so the last line names the culprit.
trace(Step) ->
    case os:getenv("PY_CHANNEL_PROP_TRACE") of
        false -> ok;
        _ ->
            case get({?MODULE, last_step}) of
                Step -> ok;
                _ ->
                    put({?MODULE, last_step}, Step),
                    io:format(user, "~n    ~tp", [Step])
            end
    end.

%% Sends each term into a channel read by Python (on a worker, or on N threads
%% Python starts, each reading its own channel) and collects the replies, in
%% order: {ok, Term} | {raised, Name, Message} | {reply_raised, Name, Message}.
-spec echo(worker | {threads, pos_integer()}, value | summary, [term()]) -> [term()].
echo(Where, Mode, Terms) ->
    trace({echo, Where, Mode}),
    Lanes = case Where of worker -> 1; {threads, N} -> N end,
    Indexed = lists:zip(lists:seq(1, length(Terms)), Terms),
    Chunks = [[IT || {I, _} = IT <- Indexed, I rem Lanes =:= Lane] || Lane <- lists:seq(0, Lanes - 1)],
    Channels = [{element(2, py_channel:new()), make_ref(), Chunk} || Chunk <- Chunks],
    Pending = case Where of
                  worker ->
                      [py:spawn_call('__main__', echo,
                                     [Ch, self(), Tag, length(Chunk), atom_to_binary(Mode)])
                       || {Ch, Tag, Chunk} <- Channels];
                  {threads, _} ->
                      [py:spawn_call('__main__', on_threads,
                                     [<<"echo">>, [[Ch, self(), Tag, length(Chunk),
                                                    atom_to_binary(Mode)]
                                                   || {Ch, Tag, Chunk} <- Channels]])]
              end,
    [ok = py_channel:send(Ch, T) || {Ch, _, Chunk} <- Channels, {_, T} <- Chunk],
    Replies = lists:append([lists:zip([I || {I, _} <- Chunk], collect(Tag, length(Chunk)))
                            || {_, Tag, Chunk} <- Channels]),
    [{ok, _} = py:await(P, ?TIMEOUT) || P <- Pending],
    [R || {_, R} <- lists:sort(Replies)].

%% The N replies {Tag, I, Result} for I = 0..N-1, in order.
-spec collect(reference(), non_neg_integer()) -> [term()].
collect(Tag, N) ->
    Deadline = erlang:monotonic_time(millisecond) + ?TIMEOUT,
    [receive
         {Tag, I, Result} -> Result
     after max(0, Deadline - erlang:monotonic_time(millisecond)) -> {no_reply, I}
     end || I <- lists:seq(0, N - 1)].

check_echoed(Route, Terms, Replies) ->
    each(fun(I, {T, Got}) -> expect({Route, I, T}, {ok, normalise(T)}, Got) end,
         lists:zip(Terms, Replies)).

%% Each {Object, ExternalFormat} pair from Python: the object's term must be the
%% one the oracle wrote.
check_oracle(Route, Pool, Pairs) ->
    each(fun(I, {Got, Etf}) when is_binary(Etf) -> expect({Route, I}, from_etf(Etf, Pool), Got);
            (I, Other) -> expect({Route, I}, a_pair, Other)
         end, Pairs).

unwrap(Replies) ->
    [case R of {ok, Pair} -> Pair; Other -> Other end || R <- Replies].

from_etf(Etf, Pool) ->
    unpool(binary_to_term(Etf), list_to_tuple(Pool)).

unpool({'$pool', I}, Pool) when is_integer(I) -> element(I + 1, Pool);
unpool(L, Pool) when is_list(L) -> [unpool(X, Pool) || X <- L];
unpool(T, Pool) when is_tuple(T) -> list_to_tuple([unpool(X, Pool) || X <- tuple_to_list(T)]);
unpool(M, Pool) when is_map(M) ->
    maps:from_list([{unpool(K, Pool), unpool(V, Pool)} || {K, V} <- maps:to_list(M)]);
unpool(X, _) -> X.

route_seed(Seed, Route) ->
    iolist_to_binary(io_lib:format("~p/~p", [Seed, Route])).

%% Terms Python cannot make itself, handed to its generator.
pool() ->
    {ok, Ch} = py_channel:new(),
    <<_:3, Bits/bitstring>> = <<"bitstring">>,
    [self(), make_ref(), Ch, fun lists:reverse/1, [1 | improper], Bits, remote_pid()].

%% ---------------------------------------------------------------------------
%% Checks

-spec each(fun((pos_integer(), term()) -> term()), [term()]) -> ok.
each(Fun, List) ->
    lists:foldl(fun(X, I) -> _ = Fun(I, X), I + 1 end, 1, List),
    ok.

-spec expect(term(), term(), term()) -> ok.
expect(_Label, Expected, Got) when Expected =:= Got ->
    ok;
expect(Label, Expected, Got) ->
    fail(Label, [{expected, show(Expected)}, {got, show(Got)},
                 {first_difference, difference(Expected, Got, [])}]).

%% Notes a failed case; run_group/2 fails the group at its end.
fail(Label, Details) ->
    put(?FAILURES, [{show(Label), Details} | get(?FAILURES)]),
    ok.

%% A ValueError naming both keys (one of the spellings of each), never a value.
expect_collision(Label, Spellings1, Spellings2, Got) ->
    case Got of
        {error, {'ValueError', Message}} when is_binary(Message) ->
            case names_both(Message, Spellings1, Spellings2) of
                true -> ok;
                false -> fail(Label, [{error_does_not_name_both_keys, Message},
                                      {one_of, Spellings1}, {and_one_of, Spellings2}])
            end;
        _ ->
            fail(Label, [{expected, "{error, {'ValueError', <message naming both keys>}}"},
                         {got, show(Got)}])
    end.

%% A Python exception caught and reported by the helpers, as py:call reports one.
as_error({raised, Name, Message}) -> {error, {Name, Message}};
as_error(Other) -> Other.

expect_too_deep(Label, Got) ->
    case Got of
        {error, {'ValueError', Message}} when is_binary(Message) -> ok;
        {raised, 'ValueError', Message} when is_binary(Message) -> ok;
        _ -> fail(Label, [{expected, "a ValueError (nested too deep)"}, {got, show(Got)}])
    end.

names_both(Message, Spellings1, Spellings2) ->
    Pairs = [{A, B} || A <- Spellings1, B <- Spellings2],
    lists:any(fun({A, B}) -> names_pair(Message, A, B) orelse names_pair(Message, B, A) end, Pairs).

%% First spelled out somewhere, and Second elsewhere in the rest.
names_pair(Message, First, Second) ->
    case re:run(Message, spelled(First), [unicode, {capture, first, index}]) of
        {match, [{At, Length}]} ->
            <<Before:At/binary, _:Length/binary, After/binary>> = Message,
            re:run(<<Before/binary, " ", After/binary>>, spelled(Second), [unicode]) =/= nomatch;
        nomatch ->
            false
    end.

%% The spelling as a whole token: `1' is not found in `1.0' nor `b' in `both'.
spelled(Text) ->
    <<"(?<![\\w.'\"])\\Q", Text/binary, "\\E(?![\\w'\"]|\\.\\d)">>.

one_line(Failure) ->
    Text = re:replace(show(Failure), "\\s+", " ", [global, unicode, {return, list}]),
    string:slice(Text, 0, 300).

show(Term) ->
    Text = lists:flatten(io_lib:format("~P", [Term, 40])),
    case length(Text) > 600 of
        true -> lists:sublist(Text, 600) ++ "...";
        false -> Text
    end.

%% Where two terms first differ.
difference(A, B, _Path) when A =:= B ->
    same;
difference(A, B, Path) when is_tuple(A), is_tuple(B), tuple_size(A) =:= tuple_size(B) ->
    cells(tuple_to_list(A), tuple_to_list(B), Path, 1);
difference([_ | _] = A, [_ | _] = B, Path) ->
    cells(A, B, Path, 1);
difference(A, B, Path) when is_map(A), is_map(B) ->
    case {maps:keys(A) -- maps:keys(B), maps:keys(B) -- maps:keys(A)} of
        {[], []} ->
            hd([difference(V, maps:get(K, B), [{key, show(K)} | Path])
                || {K, V} <- maps:to_list(A), V =/= maps:get(K, B)]);
        {Missing, Extra} ->
            {at, lists:reverse(Path), {missing_keys, show(Missing)}, {extra_keys, show(Extra)}}
    end;
difference(A, B, Path) ->
    {at, lists:reverse(Path), {expected, show(A)}, {got, show(B)}}.

cells([X | As], [Y | Bs], Path, I) when X =:= Y -> cells(As, Bs, Path, I + 1);
cells([X | _], [Y | _], Path, I) -> difference(X, Y, [I | Path]);
cells(A, B, Path, I) -> difference(A, B, [{tail_after, I - 1} | Path]).

%% The term a round trip gives back, per the type table.
normalise(A) when A =:= undefined; A =:= nil -> none;
normalise({bytes, B}) when is_binary(B) -> B;
normalise(L) when is_list(L) ->
    case is_proper(L) of
        true -> [normalise(X) || X <- L];
        false -> L % an opaque erlang.Term, back as it went
    end;
normalise(T) when is_tuple(T) -> list_to_tuple([normalise(X) || X <- tuple_to_list(T)]);
normalise(M) when is_map(M) -> maps:map(fun(_, V) -> normalise(V) end, M);
normalise(X) -> X.

is_proper([]) -> true;
is_proper([_ | T]) -> is_proper(T);
is_proper(_) -> false.

%% ---------------------------------------------------------------------------
%% Generators (rand, seeded by run_group/2)

context() ->
    {ok, Ch} = py_channel:new(),
    Dead = spawn(fun() -> ok end),
    Port = open_port({spawn, "true"}, []),
    port_close(Port),
    Captured = rand:uniform(1000),
    #{pids => [self(), Dead, whereis(init)],
      channel => Ch,
      funs => [fun(X) -> X + Captured end, fun lists:reverse/1, fun erlang:self/0],
      port => Port,
      remote_pid => remote_pid()}.

%% A pid of another node: no erlang.Pid form, so an opaque term in Python.
remote_pid() ->
    binary_to_term(<<131, 88, 100, 0, 10, "other@host", 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1>>).

term(Ctx, 0) ->
    scalar(Ctx);
term(Ctx, Depth) ->
    case rand:uniform(10) of
        N when N =< 4 -> scalar(Ctx);
        5 -> [term(Ctx, Depth - 1) || _ <- count()];
        6 -> list_to_tuple([term(Ctx, Depth - 1) || _ <- count()]);
        7 -> maps:from_list([{key(Ctx, 2), term(Ctx, Depth - 1)} || _ <- count()]);
        8 -> [term(Ctx, Depth - 1) | scalar(Ctx)];
        9 -> {tag, term(Ctx, Depth - 1)};
        10 -> lossy()
    end.

count() ->
    lists:seq(1, case rand:uniform(10) of
                     10 -> rand:uniform(40);
                     _ -> rand:uniform(6) - 1
                 end).

scalar(Ctx) ->
    case rand:uniform(17) of
        1 -> rand:uniform(2001) - 1001;
        2 -> pick(edge_integers());
        3 -> bignum();
        4 -> float_value();
        5 -> binary_value(small_size());
        6 -> binary_value(small_size());
        7 -> pick(atoms());
        8 -> pick([true, false]);
        9 -> pick(maps:get(pids, Ctx));
        10 -> pick([make_ref(), maps:get(channel, Ctx)]);
        11 -> pick(maps:get(funs, Ctx));
        12 -> maps:get(port, Ctx);
        13 -> maps:get(remote_pid, Ctx);
        14 -> [binary_value(3) | pick([tail, 7, <<"t">>])];
        15 -> <<(binary_value(small_size()))/binary, (rand:uniform(8) - 1):3>>;
        16 -> B = binary_value(100 + rand:uniform(200)),
              binary:part(B, 1, byte_size(B) - 1 - rand:uniform(50));
        17 -> pick([[], {}, #{}, <<>>])
    end.

%% Keys that never collide in Python (see the module doc).
key(Ctx, Depth) ->
    case rand:uniform(case Depth of 0 -> 6; _ -> 9 end) of
        1 -> rand:uniform(2001) - 1001;
        2 -> bignum();
        3 -> rand:uniform(2001) - 1001 + 0.5;
        4 -> <<"b:", (binary_value(rand:uniform(8) - 1))/binary>>;
        5 -> pick(['k_ok', 'k_request', 'k_é', binary_to_atom(<<"k_λ"/utf8>>, utf8)]);
        6 -> pick(maps:get(pids, Ctx) ++ [make_ref()]);
        7 -> list_to_tuple([key(Ctx, Depth - 1) || _ <- lists:seq(1, rand:uniform(3) - 1)]);
        8 -> [key(Ctx, Depth - 1)]; % unhashable in Python: an opaque key
        9 -> #{key(Ctx, Depth - 1) => key(Ctx, Depth - 1)}
    end.

%% Terms the table maps lossily; normalise/1 gives what comes back.
lossy() ->
    case rand:uniform(2) of
        1 -> pick([undefined, nil, none]);
        2 -> {bytes, binary_value(small_size())}
    end.

edge_integers() ->
    [0, 1, -1, 255, 256, -256, 1 bsl 27, 1 bsl 31 - 1, 1 bsl 31, -(1 bsl 31), -(1 bsl 31) - 1,
     1 bsl 59 - 1, 1 bsl 59, -(1 bsl 59), 1 bsl 63 - 1, 1 bsl 63, -(1 bsl 63), -(1 bsl 63) - 1,
     1 bsl 64 - 1, 1 bsl 64, -(1 bsl 64), 1 bsl 2040 - 1, 1 bsl 2040, -(1 bsl 2048)].

bignum() ->
    Magnitude = binary:decode_unsigned(rand:bytes(8 + rand:uniform(500))),
    case rand:uniform(2) of 1 -> Magnitude; 2 -> -Magnitude end.

float_value() ->
    case rand:uniform(3) of
        1 -> pick([0.0, -0.0, 5.0e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                   -1.7976931348623157e308, 0.1, 1.0e15 + 0.3]);
        2 -> rand:uniform() * 2.0e6 - 1.0e6;
        3 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(600) - 300)
    end.

atoms() ->
    ['', ok, error, request, 'Mixed Case', 'with space', 'é', 'ÿ', nan, infinity, neg_infinity,
     'Atom', 'None', 'True', binary_to_atom(<<"λ_atom"/utf8>>, utf8),
     binary_to_atom(<<"😀"/utf8>>, utf8), list_to_atom(lists:duplicate(255, $a)),
     list_to_atom(lists:duplicate(255, 16#3bb))].

small_size() ->
    case rand:uniform(20) of
        20 -> pick([4096, 65536]);
        _ -> pick([0, 1, 2, 3, 7, 8, 31, 32, 63, 64, 65, 100, 255, 256, 1000])
    end.

binary_value(Size) ->
    case rand:uniform(3) of
        1 -> ascii(Size);
        2 -> utf8(Size);
        3 -> not_utf8(Size)
    end.

ascii(N) ->
    << <<(B band 127)>> || <<B>> <= rand:bytes(N) >>.

%% Valid UTF-8 of exactly N bytes, all widths of character.
utf8(N) when N > 65536 ->
    Chunk = utf8(65536),
    <<(binary:copy(Chunk, N div 65536))/binary, (ascii(N rem 65536))/binary>>;
utf8(N) ->
    utf8(N, 0, []).

utf8(N, Size, Acc) ->
    Char = case rand:uniform(5) of
               1 -> rand:uniform(95) + 31;
               2 -> 16#a0 + rand:uniform(16#5f);
               3 -> 16#100 + rand:uniform(16#d6ff);
               4 -> 16#e000 + rand:uniform(16#1ffd);
               5 -> 16#10000 + rand:uniform(16#fffff)
           end,
    Bytes = <<Char/utf8>>,
    case Size + byte_size(Bytes) =< N of
        true -> utf8(N, Size + byte_size(Bytes), [Acc, Bytes]);
        false -> iolist_to_binary([Acc, ascii(N - Size)])
    end.

%% N bytes that are not UTF-8: random, with a 0xff somewhere.
not_utf8(0) ->
    <<>>;
not_utf8(N) ->
    At = rand:uniform(N) - 1,
    <<Before:At/binary, _, After/binary>> = rand:bytes(N),
    <<Before/binary, 255, After/binary>>.

power(_, 0) -> 1;
power(B, N) when N rem 2 =:= 0 -> power(B * B, N div 2);
power(B, N) -> B * power(B, N - 1).

pick(List) ->
    lists:nth(rand:uniform(length(List)), List).

%% Maps of N keys of four kinds, the same as big_dict(n, 'mixed') in Python.
big_map(N) ->
    maps:from_list([{big_key(I), {I}} || I <- lists:seq(0, N - 1)]).

big_key(I) ->
    case I rem 4 of
        0 -> I;
        1 -> <<"s", (integer_to_binary(I))/binary>>;
        2 -> {I, <<"t">>};
        3 -> I + 0.5
    end.

int_map(N) ->
    maps:from_list([{I, I} || I <- lists:seq(0, N - 1)]).

map_size_of(M) when is_map(M) -> map_size(M);
map_size_of(_) -> nested.

%% N levels of one kind of container around [], as nested(kind, n) in Python;
%% Key is the map key (an atom from Erlang, the binary a Python str key comes
%% back as).
nest(Kind, N, Key) ->
    lists:foldl(fun(Level, Acc) -> wrap(shape(Kind, Level), Key, Acc) end, [], lists:seq(1, N)).

shape(mixed, Level) -> element(Level rem 3 + 1, {list, tuple, map});
shape(Kind, _) -> Kind.

wrap(list, _, Term) -> [Term];
wrap(tuple, _, Term) -> {Term};
wrap(map, Key, Term) -> #{Key => Term}.

%% A map with two keys that are one key in Python, somewhere in a random term;
%% with the spellings that name each key.
random_erlang_collision(Ctx) ->
    {K1, K2, S1, S2} =
        case rand:uniform(5) of
            1 ->
                T = iolist_to_binary(["x", [$a + rand:uniform(26) - 1 || _ <- lists:seq(1, 6)]]),
                {T, binary_to_atom(T), [<<"<<\"", T/binary, "\">>">>, <<"'", T/binary, "'">>],
                 [T, <<"Atom('", T/binary, "')">>]};
            2 ->
                N = rand:uniform(999998) + 1,
                {N, float(N), [integer_to_binary(N)], [float_to_binary(float(N), [short])]};
            3 ->
                {true, 1, [<<"true">>, <<"True">>], [<<"1">>]};
            4 ->
                {false, 0, [<<"false">>, <<"False">>], [<<"0">>]};
            5 ->
                [A, B] = lists:sublist(shuffle([undefined, nil, none]), 2),
                {A, B, [atom_to_binary(A)], [atom_to_binary(B)]}
        end,
    Base = maps:from_list([{key(Ctx, 1), rand:uniform(100)} || _ <- lists:seq(1, rand:uniform(20))]),
    Map = maps:merge(Base, #{K1 => first, K2 => second}),
    Term = case rand:uniform(5) of
               1 -> Map;
               2 -> [Map];
               3 -> {tag, Map};
               4 -> #{k_ok => Map};
               5 -> [1, {<<"x">>, Map}]
           end,
    {Term, [K1, K2], S1, S2}.

shuffle(List) ->
    [X || {_, X} <- lists:sort([{rand:uniform(), X} || X <- List])].

%% Names of atoms that do not exist yet: Latin-1, Greek, emoji, 255 characters.
fresh_atom_names() ->
    Suffix = integer_to_binary(erlang:unique_integer([positive])),
    R = integer_to_binary(rand:uniform(1 bsl 40)),
    Long = unicode:characters_to_binary(lists:duplicate(255 - byte_size(Suffix) - byte_size(R), 16#3bb)),
    [{latin1, <<"fresh_é_"/utf8, R/binary, Suffix/binary>>},
     {greek, <<"fresh_λ_"/utf8, R/binary, Suffix/binary>>},
     {emoji, <<"fresh_😀_"/utf8, R/binary, Suffix/binary>>},
     {greek_255_characters, <<Long/binary, R/binary, Suffix/binary>>}].


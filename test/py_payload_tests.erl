%% Large payloads and the data ML code hands back: buffer-protocol objects,
%% numpy-style scalars, and binaries read in Python as memoryviews over the
%% Erlang binary's own bytes.
-module(py_payload_tests).

-include_lib("eunit/include/eunit.hrl").

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

%% Python namespaces belong to the calling process: each test defines these.
define_helpers() ->
    ok = py:exec(<<"
import array

class Index:
    '''An integer that is not an int: numpy's integer scalars are such.'''
    def __init__(self, value): self.value = value
    def __index__(self): return self.value

class Floating:
    '''A number with only __float__: numpy's float scalars have it.'''
    def __init__(self, value): self.value = value
    def __float__(self): return self.value

class Both(Index):
    '''__index__ and __float__: an integer wins, as for int itself.'''
    def __float__(self): return 0.5

class Broken:
    def __float__(self): raise ArithmeticError('no value')

from erlang.channel import Channel

def send_all(ref, items):
    with Channel(ref) as out:
        for item in items:
            out.send(item)

def try_send(ref, item):
    return Channel(ref).try_send(item)

import hashlib, threading
kept = {}

def take_view(ref, key):
    '''Receives one message as a memoryview and keeps it under `key`.'''
    view = Channel(ref, binary='memoryview').receive(5)
    kept[key] = view
    return (type(view).__name__, view.readonly, type(view.obj).__name__, len(view),
            hashlib.sha256(view).digest())

def keep_slice(key):
    '''Keeps only an object made from the view (a slice of it), not the view itself.'''
    kept[key] = kept[key][1:]

def drop(key):
    del kept[key]

def kind(value):
    return type(value).__name__

def drop_on_another_thread(key):
    view = kept.pop(key)
    thread = threading.Thread(target=lambda *_: None, args=(view,))
    del view
    thread.start()
    thread.join()

def write_into(key):
    try:
        kept[key][0] = 1
    except TypeError as error:
        return str(error)
">>).

payload_test_() ->
    {setup, fun setup/0,
     [{"buffer-protocol objects convert to a binary of their bytes", fun buffers/0},
      {"a non-contiguous buffer is a TypeError that says so", fun non_contiguous/0},
      {"__index__ gives an integer, __float__ a float, after the exact types", fun numbers/0},
      {"binary='memoryview': read-only views over the binary's own bytes", fun views/0},
      {"{memoryview, B} arrives as a view, in calls and in messages", fun tagged_views/0},
      {timeout, 60, {"a 100 MB binary viewed in Python costs no copy and is released after",
                     fun large_view/0}},
      {timeout, 60, {"a 100 MB bytes reaches Erlang without a second copy, released after",
                     fun lent_bytes/0}},
      {timeout, 60, {"the interpreter keeps large blocks: right contents, bounded memory",
                     fun allocator/0}},
      {"on a thread Python started: views made and dropped, dates and decimals both ways",
       fun on_a_python_thread/0}
      | numpy_tests()]}.

%% The exporters behind views (and their free list) and the date and decimal structs,
%% used from a threading.Thread: made, read and released there, converted both ways.
on_a_python_thread() ->
    ok = py:exec(<<"
import datetime, decimal, threading
from erlang.channel import Channel

def on_thread(ref):
    out = {}
    def work():
        channel = Channel(ref, binary='memoryview')
        views = [channel.receive() for _ in range(200)]
        out['kinds'] = sorted({type(view).__name__ for view in views})
        out['sizes'] = sorted({bytes(view).count(b'x') for view in views})
        date = channel.receive()
        out['date'] = (type(date).__name__, date.isoformat())
        del views
        channel.send((datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
                      decimal.Decimal('1.50')))
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return (out['kinds'], out['sizes'], out['date'])
">>),
    {ok, Ch} = py_channel:new(),
    Bin = binary:copy(<<"x">>, 100000),
    [ok = py_channel:send(Ch, Bin) || _ <- lists:seq(1, 200)],
    ok = py_channel:send(Ch, #{'__struct__' => 'Elixir.Date', calendar => 'Elixir.Calendar.ISO',
                               year => 2024, month => 2, day => 29}),
    ?assertEqual({ok, {[<<"memoryview">>], [100000], {<<"date">>, <<"2024-02-29">>}}},
                 py:call('__main__', on_thread, [Ch])),
    {ok, {DateTime, Decimal}} = py_channel:try_receive(Ch),
    ?assertMatch(#{'__struct__' := 'Elixir.DateTime', year := 2024, hour := 3,
                   time_zone := <<"Etc/UTC">>}, DateTime),
    ?assertEqual(#{'__struct__' => 'Elixir.Decimal', sign => 1, coef => 150, exp => -2},
                 Decimal).

buffers() ->
    define_helpers(),
    ?assertEqual({ok, <<"abc">>}, py:eval(<<"bytearray(b'abc')">>)),
    ?assertEqual({ok, <<"bcd">>}, py:eval(<<"memoryview(b'abcde')[1:4]">>)),
    ?assertEqual({ok, <<1:32/native, 2:32/native, 3:32/native>>},
                 py:eval(<<"array.array('i', [1, 2, 3])">>)),
    ?assertEqual({ok, <<1.5/float-native, -2.0/float-native>>},
                 py:eval(<<"memoryview(array.array('d', [1.5, -2.0]))">>)),
    %% A two-dimensional contiguous buffer: its bytes in order.
    ?assertEqual({ok, <<"abcdef">>},
                 py:eval(<<"memoryview(b'abcdef').cast('B', (2, 3))">>)),
    ?assertEqual({ok, <<>>}, py:eval(<<"array.array('b')">>)),
    %% What used to work is unchanged: bytes and str stay binaries, lists stay lists.
    ?assertEqual({ok, [<<"x">>, <<"y">>]}, py:eval(<<"['x', b'y']">>)),
    %% Through a channel too, written by Python.
    {ok, Ch} = py_channel:new(),
    {ok, none} = py:eval(<<"send_all(ch, [array.array('h', [7]), bytearray(5000)])">>,
                         #{ch => Ch}),
    ?assertEqual({ok, <<7:16/native>>}, py_channel:try_receive(Ch)),
    ?assertEqual({ok, <<0:40000>>}, py_channel:try_receive(Ch)).

non_contiguous() ->
    define_helpers(),
    {error, {'TypeError', Message}} = py:eval(<<"memoryview(b'abcdef')[::2]">>),
    ?assertMatch({match, _}, re:run(Message, <<"memoryview.*not contiguous">>)),
    {ok, Ch} = py_channel:new(),
    ?assertMatch({error, {'TypeError', _}},
                 py:eval(<<"try_send(ch, memoryview(b'abcdef')[::2])">>, #{ch => Ch})),
    ?assertMatch(#{length := 0}, py_channel:info(Ch)).

numbers() ->
    define_helpers(),
    ?assertEqual({ok, 7}, py:eval(<<"Index(7)">>)),
    ?assertEqual({ok, 1 bsl 80}, py:eval(<<"Index(2 ** 80)">>)),
    ?assertEqual({ok, 2.5}, py:eval(<<"Floating(2.5)">>)),
    ?assertEqual({ok, infinity}, py:eval(<<"Floating(float('inf'))">>)),
    ?assertEqual({ok, 3}, py:eval(<<"Both(3)">>)),
    ?assertEqual({ok, [1, 2.0, {3}]}, py:eval(<<"[Index(1), Floating(2.0), (Index(3),)]">>)),
    %% An int subclass or a float subclass is still handled as the exact type was.
    ?assertEqual({ok, true}, py:eval(<<"True">>)),
    ?assertEqual({ok, 4}, py:eval(<<"type('I', (int,), {})(4)">>)),
    %% An error raised by __float__ comes back as that error.
    ?assertMatch({error, {'ArithmeticError', <<"no value">>}}, py:eval(<<"Broken()">>)),
    %% Neither: still a TypeError naming the type.
    ?assertMatch({error, {'TypeError', <<"cannot convert set to an Erlang term">>}},
                 py:eval(<<"{1}">>)).

views() ->
    define_helpers(),
    {ok, Ch} = py_channel:new(),
    Large = binary:copy(<<"0123456789abcdef">>, 65536),
    [ok = py_channel:send(Ch, Term) || Term <- [Large, <<"short">>, <<>>, {tuple, <<"in">>}]],
    ?assertEqual({ok, {<<"memoryview">>, true, <<"Binary">>, byte_size(Large),
                       crypto:hash(sha256, Large)}},
                 py:eval(<<"take_view(ch, 'large')">>, #{ch => Ch})),
    {ok, Message} = py:eval(<<"write_into('large')">>),
    ?assertMatch({match, _}, re:run(Message, <<"read-only">>)),
    %% Small binaries and empty ones are views too; binaries inside other terms as well.
    ?assertMatch({ok, {<<"memoryview">>, true, <<"Binary">>, 5, _}},
                 py:eval(<<"take_view(ch, 'short')">>, #{ch => Ch})),
    ?assertEqual({ok, <<"short">>}, py:eval(<<"bytes(kept['short'])">>)),
    ?assertMatch({ok, {<<"memoryview">>, true, <<"Binary">>, 0, _}},
                 py:eval(<<"take_view(ch, 'empty')">>, #{ch => Ch})),
    ?assertEqual({ok, {<<"memoryview">>, <<"in">>}},
                 py:eval(<<"(lambda t: (type(t[1]).__name__, bytes(t[1])))"
                           "(Channel(ch, binary='memoryview').receive(5))">>, #{ch => Ch})),
    %% A view sent back to Erlang is a binary of its bytes.
    ?assertEqual({ok, <<"short">>}, py:eval(<<"kept['short']">>)),
    ?assertMatch({error, {'ValueError', _}},
                 py:eval(<<"Channel(ch, binary='view')">>, #{ch => Ch})),
    [{ok, none} = py:eval(<<"drop(k)">>, #{k => K}) || K <- [<<"large">>, <<"short">>, <<"empty">>]].

tagged_views() ->
    define_helpers(),
    Large = binary:copy(<<"x">>, 100000),
    ?assertEqual({ok, {<<"memoryview">>, true, 100000}},
                 py:eval(<<"(type(x).__name__, x.readonly, len(x))">>, #{x => {memoryview, Large}})),
    ?assertEqual({ok, [<<"memoryview">>, <<"str">>]},
                 py:eval(<<"[type(v).__name__ for v in x]">>,
                         #{x => [{memoryview, <<"a">>}, <<"b">>]})),
    ?assertEqual({ok, <<"memoryview">>}, py:call('__main__', kind, [{memoryview, Large}])),
    %% The view outlives the call that received it.
    ?assertEqual({ok, none}, py:eval(<<"kept.__setitem__('arg', x)">>, #{x => {memoryview, Large}})),
    ?assertEqual({ok, Large}, py:eval(<<"bytes(kept['arg'])">>)),
    {ok, none} = py:eval(<<"drop('arg')">>),
    %% In any channel mode, {memoryview, B} is a view.
    {ok, Ch} = py_channel:new(),
    ok = py_channel:send(Ch, {memoryview, Large}),
    ?assertEqual({ok, {<<"memoryview">>, 100000}},
                 py:eval(<<"(lambda v: (type(v).__name__, len(v)))(Channel(ch).receive(5))">>,
                         #{ch => Ch})).

large_view() ->
    define_helpers(),
    Size = 100 * 1024 * 1024,
    {ok, Ch} = py_channel:new(),
    %% Made by a process that then exits: the channel holds the only reference.
    {Pid, Monitor} = spawn_monitor(fun() ->
                                           Binary = binary:copy(<<7>>, Size),
                                           ok = py_channel:send(Ch, Binary),
                                           exit({digest, crypto:hash(sha256, Binary)})
                                   end),
    Digest = receive {'DOWN', Monitor, process, Pid, {digest, Hash}} -> Hash end,
    erlang:garbage_collect(),
    Binaries = erlang:memory(binary),
    Rss = py_test_support:rss_mb(),
    ?assertMatch({ok, {<<"memoryview">>, true, <<"Binary">>, Size, Digest}},
                 py:eval(<<"take_view(ch, 'big')">>, #{ch => Ch})),
    %% Read in full (the hash), yet not copied.
    ?assert(py_test_support:rss_mb() - Rss < 50),
    %% Kept alive by an object made from the view, the view itself dropped.
    {ok, none} = py:eval(<<"keep_slice('big')">>),
    ?assert(erlang:memory(binary) > Binaries - Size div 2),
    ?assertEqual({ok, 7}, py:eval(<<"kept['big'][12345]">>)),
    %% The last reference goes on a thread Python started: the binary is freed (the VM
    %% accounts for memory freed off its schedulers a moment later).
    {ok, none} = py:eval(<<"drop_on_another_thread('big')">>),
    py_test_support:wait_until(fun() -> erlang:memory(binary) < Binaries - Size div 2 end).

lent_bytes() ->
    ok = py:exec(<<"big = b'\\x07' * (100 * 1024 * 1024)">>),
    erlang:garbage_collect(),
    Rss = py_test_support:rss_mb(),
    {ok, Ch} = py_channel:new(),
    ok = use_big(Ch, Rss),
    ?assertEqual({ok, 100 * 1024 * 1024},
                 py:eval(<<"len(Channel(ch, binary='memoryview').receive(5))">>, #{ch => Ch})),
    %% Once Python and Erlang both let go, the memory goes back: the VM frees the binary
    %% (its resource may be released a little after the garbage collection), and the
    %% release of the bytes object, put off because no Python thread was attached then, is
    %% done by a later Python call.
    ok = py:exec(<<"del big">>),
    erlang:garbage_collect(),
    py_test_support:wait_until(fun() ->
                                       {ok, 1} = py:eval(<<"1">>),
                                       py_test_support:rss_mb() - Rss < -50
                               end).

%% Takes Python's `big` as a binary, checks it, and sends it into `Ch`: the binary Erlang
%% gets is the bytes object's own buffer, no second 100 MB.
use_big(Ch, Rss) ->
    {ok, Big} = py:eval(<<"big">>),
    ?assertEqual(100 * 1024 * 1024, byte_size(Big)),
    ?assertEqual(<<7, 7, 7>>, binary:part(Big, byte_size(Big) - 3, 3)),
    ?assert(py_test_support:rss_mb() - Rss < 50),
    py_channel:send(Ch, Big).

%% The interpreter's raw allocator keeps large blocks for reuse (the BEAM's malloc settings
%% would map and unmap each): contents stay right through growth, shrinking and reuse, and
%% what it keeps is bounded.
allocator() ->
    ok = py:exec(<<"
def grow_and_shrink():
    b = bytearray()
    for i in range(300):
        b += bytes([i % 256]) * 4096
    ok = all(b[j * 4096] == j % 256 and b[j * 4096 + 4095] == j % 256 for j in range(300))
    del b[4096:]
    return ok and len(b) == 4096 and b[4095] == 0

def reuse():
    for round in range(3):
        blocks = [bytes([k % 256]) * (200_000 + k * 1000) for k in range(100)]
        if not all(len(x) == 200_000 + k * 1000 and x[-1] == k % 256 for k, x in enumerate(blocks)):
            return False
        del blocks
    return True

def churn(count, size):
    for k in range(count):
        x = bytes([k % 256]) * size
        if x[size // 2] != k % 256:
            return False
    return True

def churn_on_threads(threads, count, size):
    # churn() on threads Python starts, all at once: they share the kept blocks.
    import threading
    results = []
    workers = [threading.Thread(target=lambda: results.append(churn(count, size)))
               for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(results) == threads and all(results)

def hold_then_free(count, size):
    held = [bytes([1]) * size for _ in range(count)]
    del held
">>),
    ?assertEqual({ok, true}, py:eval(<<"grow_and_shrink()">>)),
    ?assertEqual({ok, true}, py:eval(<<"reuse()">>)),
    ?assertEqual({ok, true}, py:eval(<<"churn(2000, 1 << 20)">>)),
    ?assertEqual({ok, true}, py:eval(<<"churn_on_threads(4, 500, 3 << 19)">>)),
    Rss = py_test_support:rss_mb(),
    %% 400 MB at once, then freed: at most 64 MB of it is kept.
    {ok, none} = py:eval(<<"hold_then_free(100, 4 << 20)">>),
    ?assert(py_test_support:rss_mb() - Rss < 100).

numpy_tests() ->
    case py_test_support:importable(numpy) of
        true ->
            [{timeout, 60, {"numpy: views in, arrays and scalars out", fun numpy_round_trip/0}}];
        {false, Venv} ->
            [{"numpy round trip: SKIPPED, numpy is not importable and " ++ Venv ++ " has none",
              fun() -> ok end}]
    end.

numpy_round_trip() ->
    ok = py:exec(<<"
import numpy
from erlang.channel import Channel

def doubled(ref):
    '''Reads a float64 array as a view, answers it doubled, as an array.'''
    view = Channel(ref, binary='memoryview').receive(5)
    return numpy.frombuffer(view, dtype='<f8') * 2

def scalars():
    return [numpy.int64(7), numpy.float32(0.5), numpy.uint8(255), numpy.float64(1.25)]
">>),
    Floats = [1.5, -2.0, 1.0e300, 0.0],
    {ok, Ch} = py_channel:new(),
    ok = py_channel:send(Ch, << <<F:64/float-little>> || F <- Floats >>),
    {ok, Doubled} = py:eval(<<"doubled(ch)">>, #{ch => Ch}),
    ?assertEqual([2 * F || F <- Floats], [F || <<F:64/float-little>> <= Doubled]),
    ?assertEqual({ok, [7, 0.5, 255, 1.25]}, py:eval(<<"scalars()">>)),
    {error, {'TypeError', Message}} = py:eval(<<"numpy.arange(12).reshape(3, 4).T">>),
    ?assertMatch({match, _}, re:run(Message, <<"not contiguous">>)).

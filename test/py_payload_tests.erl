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
">>).

payload_test_() ->
    {setup, fun setup/0,
     [{"buffer-protocol objects convert to a binary of their bytes", fun buffers/0},
      {"a non-contiguous buffer is a TypeError that says so", fun non_contiguous/0},
      {"__index__ gives an integer, __float__ a float, after the exact types", fun numbers/0}]}.

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

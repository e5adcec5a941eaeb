%% Term conversion between Erlang and Python, through the real interpreter:
%% one test per row of the type table, then a seeded property test over
%% thousands of generated terms.
-module(py_conversion_tests).

-include_lib("eunit/include/eunit.hrl").

-define(SEED, 20261126).
-define(GENERATED, 3000).

setup() ->
    {ok, _} = application:ensure_all_started(py_channel),
    ok.

conversion_test_() ->
    {setup, fun setup/0,
     [{"integers of any size", fun integers/0},
      {"floats; nan and infinities come back as atoms", fun floats/0},
      {"binaries: str when UTF-8, else bytes; {bytes, B} forces bytes", fun binaries/0},
      {"atoms are erlang.Atom, a str", fun atoms/0},
      {"booleans and the none atoms", fun booleans_and_none/0},
      {"None can come back as nil, for Elixir", fun none_is_configurable/0},
      {"lists, tuples and maps", fun containers/0},
      {"pids, refs and channels", fun identities/0},
      {"ports, funs, improper lists and bitstrings stay opaque", fun opaque_terms/0},
      {"a Python str never becomes an atom", fun str_is_never_an_atom/0},
      {"an unconvertible object is a TypeError naming its type", fun unconvertible/0},
      {"nesting past the bound is an error, not a crash", fun too_deep/0},
      {timeout, 60, {"seeded round trip of generated terms", fun property_round_trip/0}}]}.

%% The term after a trip into Python and back.
round_trip(Term) ->
    py:eval(<<"x">>, #{x => Term}).

%% The Python type name the term arrives as.
python_type(Term) ->
    {ok, Name} = py:eval(<<"type(x).__name__">>, #{x => Term}),
    Name.

integers() ->
    Values = [0, 1, -1, 1 bsl 59, 1 bsl 63 - 1, -(1 bsl 63), 1 bsl 63, 1 bsl 64 - 1,
              1 bsl 64, -(1 bsl 64), 1 bsl 300, -(1 bsl 300) + 7, 1 bsl 2050 + 3],
    [?assertEqual({ok, V}, round_trip(V)) || V <- Values],
    ?assertEqual(<<"int">>, python_type(1 bsl 100)),
    ?assertEqual({ok, 1 bsl 200}, py:eval(<<"2 ** 200">>)),
    ?assertEqual({ok, -(3 bsl 100)}, py:eval(<<"-3 * 2 ** 100">>)).

floats() ->
    [?assertEqual({ok, F}, round_trip(F)) || F <- [0.0, 1.5, -2.25, 1.0e308, 5.0e-324]],
    ?assertEqual(<<"float">>, python_type(1.5)),
    ?assertEqual({ok, nan}, py:eval(<<"float('nan')">>)),
    ?assertEqual({ok, infinity}, py:eval(<<"float('inf')">>)),
    ?assertEqual({ok, neg_infinity}, py:eval(<<"-float('inf')">>)).

binaries() ->
    ?assertEqual(<<"str">>, python_type(<<"héllo"/utf8>>)),
    ?assertEqual(<<"bytes">>, python_type(<<255, 0, 1>>)),
    ?assertEqual(<<"bytes">>, python_type({bytes, <<"text">>})),
    ?assertEqual({ok, <<"héllo"/utf8>>}, round_trip(<<"héllo"/utf8>>)),
    ?assertEqual({ok, <<255, 0, 1>>}, round_trip(<<255, 0, 1>>)),
    ?assertEqual({ok, <<"text">>}, round_trip({bytes, <<"text">>})),
    Big = crypto_free_random_bytes(100000),
    ?assertEqual({ok, Big}, round_trip(Big)),
    ?assertEqual({ok, <<"abc">>}, py:eval(<<"bytearray(b'abc')">>)),
    %% ASCII takes a shorter path to str than other UTF-8: same result.
    ?assertEqual({ok, true}, py:eval(<<"x == 'plain ascii' and type(x) is str">>,
                                     #{x => <<"plain ascii">>})),
    ?assertEqual({ok, true}, py:eval(<<"x == '' and type(x) is str">>, #{x => <<>>})),
    ?assertEqual({ok, [<<"a">>, <<"é"/utf8>>, <<>>]}, round_trip([<<"a">>, <<"é"/utf8>>, <<>>])).

atoms() ->
    ?assertEqual(<<"Atom">>, python_type(request)),
    ?assertEqual({ok, true}, py:eval(<<"isinstance(x, str) and x == 'request'">>,
                                     #{x => request})),
    ?assertEqual({ok, true}, py:eval(<<"m[0] == 'request'">>, #{m => {request, 1}})),
    ?assertEqual({ok, request}, round_trip(request)),
    ?assertEqual({ok, 'with space'}, round_trip('with space')),
    ?assertEqual({ok, 'ünï'}, round_trip('ünï')),
    Unicode = binary_to_atom(<<"λ_atom"/utf8>>, utf8),
    ?assertEqual({ok, Unicode}, round_trip(Unicode)),
    ?assertEqual({ok, made_in_python}, py:eval(<<"__import__('erlang').Atom('made_in_python')">>)).

booleans_and_none() ->
    ?assertEqual(<<"bool">>, python_type(true)),
    ?assertEqual({ok, true}, round_trip(true)),
    ?assertEqual({ok, false}, round_trip(false)),
    [?assertEqual(<<"NoneType">>, python_type(A)) || A <- [undefined, nil, none]],
    [?assertEqual({ok, none}, round_trip(A)) || A <- [undefined, nil, none]],
    ?assertEqual({ok, none}, py:eval(<<"None">>)).

none_is_configurable() ->
    try
        ok = py_channel_nif:py_set_none_atom(nil),
        ?assertEqual({ok, nil}, py:eval(<<"None">>)),
        ?assertEqual({ok, [nil, 1]}, py:eval(<<"[None, 1]">>)),
        ?assertError(badarg, py_channel_nif:py_set_none_atom(null)),
        ?assertEqual({ok, nil}, py:eval(<<"None">>))
    after
        ok = py_channel_nif:py_set_none_atom(none)
    end,
    ?assertEqual({ok, none}, py:eval(<<"None">>)).

containers() ->
    ?assertEqual(<<"list">>, python_type([1, 2])),
    ?assertEqual(<<"tuple">>, python_type({1, 2})),
    ?assertEqual(<<"dict">>, python_type(#{a => 1})),
    Nested = #{list => [1, {2, <<"three">>}, [#{}]], tuple => {}, <<"bin">> => {a, [b]}},
    ?assertEqual({ok, Nested}, round_trip(Nested)),
    ?assertEqual({ok, []}, round_trip([])),
    ?assertEqual({ok, {}}, round_trip({})),
    %% A list key has no hashable Python form; it comes back all the same.
    ListKey = #{[1, 2] => a, #{k => v} => b},
    ?assertEqual({ok, ListKey}, round_trip(ListKey)),
    ?assertEqual({ok, #{<<"a">> => [1, 2]}}, py:eval(<<"{'a': [1, 2]}">>)).

identities() ->
    {ok, Ch} = py_channel:new(),
    Ref = make_ref(),
    ?assertEqual(<<"Pid">>, python_type(self())),
    ?assertEqual(<<"Ref">>, python_type(Ref)),
    ?assertEqual(<<"ChannelRef">>, python_type(Ch)),
    {ok, {Pid, Ref2, Ch2}} = round_trip({self(), Ref, Ch}),
    ?assert(Pid =:= self()),
    ?assert(Ref2 =:= Ref),
    ?assert(Ch2 =:= Ch),
    ok = py_channel:send(Ch2, still_works),
    ?assertEqual({ok, still_works}, py_channel:try_receive(Ch)),
    %% Equal and hashable in Python.
    ?assertEqual({ok, true}, py:eval(<<"a == b and hash(a) == hash(b) and len({a, b}) == 1">>,
                                     #{a => self(), b => self()})),
    ?assertEqual({ok, true}, py:eval(<<"a == b and len({a, b}) == 1">>, #{a => Ref, b => Ref})),
    %% More pids than Python keeps converted objects of: every one comes back itself.
    Pids = [spawn(fun() -> ok end) || _ <- lists:seq(1, 300)],
    ?assertEqual({ok, Pids}, round_trip(Pids)),
    ?assertEqual({ok, 300}, py:eval(<<"len(set(x))">>, #{x => Pids ++ Pids})),
    %% A pid of another node has no erlang.Pid form; it travels as an opaque term.
    Remote = binary_to_term(<<131, 88, 100, 0, 10, "other@host", 0, 0, 0, 7,
                              0, 0, 0, 0, 0, 0, 0, 1>>),
    ?assertEqual(<<"Term">>, python_type(Remote)),
    {ok, RemoteBack} = round_trip(Remote),
    ?assert(RemoteBack =:= Remote).

opaque_terms() ->
    Port = open_port({spawn, "true"}, []),
    port_close(Port),
    Fun = fun(X) -> X + 1 end,
    Improper = [1, 2 | tail],
    <<_:1, Bits/bitstring>> = <<"bits">>,
    [begin
         ?assertEqual(<<"Term">>, python_type(T)),
         {ok, Back} = round_trip(T),
         ?assert(Back =:= T)
     end || T <- [Port, Fun, Improper, Bits]],
    {ok, F} = round_trip(Fun),
    ?assertEqual(2, F(1)).

str_is_never_an_atom() ->
    ?assertEqual({ok, <<"abc">>}, py:eval(<<"'abc'">>)),
    ?assertEqual({ok, #{<<"key">> => <<"value">>}}, py:eval(<<"{'key': 'value'}">>)),
    Before = erlang:system_info(atom_count),
    {ok, _} = py:eval(<<"['fresh_%d' % i for i in range(1000)]">>),
    ?assert(erlang:system_info(atom_count) - Before < 10).

unconvertible() ->
    ?assertMatch({error, {'TypeError', <<"cannot convert set to an Erlang term">>}},
                 py:eval(<<"{1, 2}">>)),
    ?assertMatch({error, {'TypeError', <<"cannot convert object to an Erlang term">>}},
                 py:eval(<<"object()">>)),
    ?assertMatch({error, {'TypeError', _}}, py:eval(<<"[1, lambda: 0]">>)),
    %% Two Python keys that become the same Erlang term.
    ?assertMatch({error, {'ValueError', _}}, py:eval(<<"{b'a': 1, 'a': 2}">>)).

too_deep() ->
    Deep = lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 20000)),
    ?assertMatch({error, {'ValueError', _}}, round_trip(Deep)),
    ?assertMatch({error, {'ValueError', _}},
                 py:eval(<<"(lambda: [l := [], [l := [l] for _ in range(20000)], l][2])()">>)),
    %% Within the bound, fine.
    Fine = lists:foldl(fun(_, Acc) -> {Acc} end, x, lists:seq(1, 1000)),
    ?assertEqual({ok, Fine}, round_trip(Fine)).

property_round_trip() ->
    _ = rand:seed(exsss, ?SEED),
    Terms = [term(4) || _ <- lists:seq(1, ?GENERATED)],
    lists:foreach(
      fun(Batch) ->
              {ok, Back} = round_trip(Batch),
              [?assertEqual(Sent, Got) || {Sent, Got} <- lists:zip(Batch, Back)]
      end, batches(Terms, 100)).

batches([], _) -> [];
batches(List, N) when length(List) =< N -> [List];
batches(List, N) ->
    {Batch, Rest} = lists:split(N, List),
    [Batch | batches(Rest, N)].

%% Generators. Everything here round-trips exactly; the special cases
%% (undefined/nil, {bytes, B}, colliding map keys) have their own tests.
term(0) -> scalar();
term(Depth) ->
    case rand:uniform(10) of
        N when N =< 5 -> scalar();
        6 -> [term(Depth - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)];
        7 -> list_to_tuple([term(Depth - 1) || _ <- lists:seq(1, rand:uniform(4) - 1)]);
        8 -> maps:from_list([{key(), term(Depth - 1)} || _ <- lists:seq(1, rand:uniform(4) - 1)]);
        9 -> [term(Depth - 1) | term(0)];
        10 -> {tag, term(Depth - 1)}
    end.

scalar() ->
    case rand:uniform(12) of
        1 -> rand:uniform(1000) - 500;
        2 -> (rand:uniform(1 bsl 62) - (1 bsl 61)) * (1 bsl rand:uniform(200));
        3 -> rand:uniform() * 1.0e6 - 5.0e5;
        4 -> utf8_binary();
        5 -> crypto_free_random_bytes(rand:uniform(40));
        6 -> lists:nth(rand:uniform(5), [ok, error, request, 'Mixed Case', 'é']);
        7 -> lists:nth(rand:uniform(2), [true, false]);
        8 -> self();
        9 -> make_ref();
        10 -> crypto_free_random_bytes(rand:uniform(3) * 100);
        11 -> -(1 bsl 63) + rand:uniform(10);
        12 -> 1 bsl 64 - rand:uniform(10)
    end.

key() ->
    case rand:uniform(3) of
        1 -> rand:uniform(100);
        2 -> utf8_binary();
        3 -> {rand:uniform(5), utf8_binary()}
    end.

utf8_binary() ->
    Chars = [lists:nth(rand:uniform(6), [$a, $Z, $0, 16#e9, 16#3bb, 16#1f600])
             || _ <- lists:seq(1, rand:uniform(12) - 1)],
    unicode:characters_to_binary(Chars).

crypto_free_random_bytes(N) ->
    << <<(rand:uniform(256) - 1)>> || _ <- lists:seq(1, N) >>.

defmodule PyStructsTest do
  # Elixir's date, time and decimal structs and Python's datetime, date and decimal.Decimal.
  use ExUnit.Case, async: true

  test "Date, NaiveDateTime and DateTime arrive as date and datetime, and come back" do
    assert Py.eval("(type(x).__name__, x.isoformat())", x: ~D[2024-02-29]) ==
             {:ok, {"date", "2024-02-29"}}

    assert Py.eval("(type(x).__name__, x.tzinfo is None, x.isoformat())",
             x: ~N[2024-01-02 03:04:05.123456]
           ) == {:ok, {"datetime", true, "2024-01-02T03:04:05.123456"}}

    assert Py.eval("x.isoformat()", x: ~U[2024-01-02 03:04:05.123456Z]) ==
             {:ok, "2024-01-02T03:04:05.123456+00:00"}

    for value <- [~D[2024-02-29], ~N[2024-01-02 03:04:05.123456], ~U[2024-01-02 03:04:05.123456Z]] do
      assert Py.eval("x", x: value) == {:ok, value}
    end
  end

  test "a datetime made in Python comes back as a DateTime in UTC, or a NaiveDateTime" do
    :ok = Py.exec("from datetime import date, datetime, timedelta, timezone")

    {:ok, aware} =
      Py.eval("datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))")

    assert DateTime.compare(aware, ~U[2024-01-02 01:04:05.000006Z]) == :eq
    assert aware.time_zone == "Etc/UTC"
    assert Py.eval("datetime(2024, 1, 2, 3, 4, 5)") == {:ok, ~N[2024-01-02 03:04:05.000000]}
    assert Py.eval("date(2024, 1, 2)") == {:ok, ~D[2024-01-02]}
  end

  test "Decimal structs arrive as decimal.Decimal, exactly, and come back" do
    price = %{__struct__: Decimal, sign: -1, coef: 12_345_678_901_234_567_890_123, exp: -5}
    assert Py.eval("str(x)", x: price) == {:ok, "-123456789012345678.90123"}
    assert Py.eval("x", x: price) == {:ok, price}
    :ok = Py.exec("from decimal import Decimal")

    assert Py.eval("Decimal('1.50') + Decimal('0.25')") ==
             {:ok, %{__struct__: Decimal, sign: 1, coef: 175, exp: -2}}

    assert Py.eval("(Decimal('NaN'), Decimal('-Infinity'))") ==
             {:ok,
              {%{__struct__: Decimal, sign: 1, coef: :NaN, exp: 0},
               %{__struct__: Decimal, sign: -1, coef: :inf, exp: 0}}}
  end

  test "other structs stay dicts with their __struct__, and come back the same" do
    uri = URI.parse("https://example.com/path")
    assert Py.eval("x['host']", x: uri) == {:ok, "example.com"}
    # nil is None in Python, and None comes back as :none unless python_none is nil.
    assert Py.eval("x", x: uri) ==
             {:ok, %{uri | userinfo: :none, query: :none, fragment: :none}}
  end
end

//! Elixir's date, time and decimal structs and their Python counterparts, both ways:
//! `Date` <-> `datetime.date`, `NaiveDateTime` <-> a naive `datetime.datetime`, `DateTime`
//! <-> an aware one (coming back in UTC: an Elixir `DateTime` in another zone needs a time
//! zone database to be built), and `Decimal` (the `decimal` package's struct) <->
//! `decimal.Decimal`. A struct is a map with a `__struct__` key, so Erlang code sees these
//! as the maps they are. Only the ISO calendar converts; any other struct stays a dict.

use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};
use pyo3::PyTypeInfo;
use rustler::{Atom, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        struct_key = "__struct__",
        date = "Elixir.Date",
        naive_date_time = "Elixir.NaiveDateTime",
        date_time = "Elixir.DateTime",
        decimal = "Elixir.Decimal",
        calendar_iso = "Elixir.Calendar.ISO",
        calendar,
        year,
        month,
        day,
        hour,
        minute,
        second,
        microsecond,
        time_zone,
        zone_abbr,
        utc_offset,
        std_offset,
        sign,
        coef,
        exp,
        inf,
        nan = "NaN",
    }
}

/// The Python object for an Elixir struct this module knows, `None` for any other map.
pub fn to_python<'py>(py: Python<'py>, map: Term<'_>) -> Option<PyResult<Bound<'py, PyAny>>> {
    let kind: Atom = map.map_get(atoms::struct_key()).ok()?.decode().ok()?;
    let field = |name: Atom| map.map_get(name).ok();
    let int = |name: Atom| field(name).and_then(|value| value.decode::<i64>().ok());
    let iso = || {
        field(atoms::calendar())
            .is_some_and(|value| value == atoms::calendar_iso().encode(map.get_env()))
    };
    if kind == atoms::date() && iso() {
        let (year, month, day) = (
            int(atoms::year())?,
            int(atoms::month())?,
            int(atoms::day())?,
        );
        return Some(call(py, "datetime", "date", (year, month, day)));
    }
    if (kind == atoms::naive_date_time() || kind == atoms::date_time()) && iso() {
        let (microseconds, _precision): (i64, i64) = field(atoms::microsecond())?.decode().ok()?;
        let fields = (
            int(atoms::year())?,
            int(atoms::month())?,
            int(atoms::day())?,
            int(atoms::hour())?,
            int(atoms::minute())?,
            int(atoms::second())?,
            microseconds,
        );
        if kind == atoms::naive_date_time() {
            return Some(call(py, "datetime", "datetime", fields));
        }
        let offset = int(atoms::utc_offset())? + int(atoms::std_offset())?;
        return Some(aware(py, fields, offset));
    }
    if kind == atoms::decimal() {
        let sign = int(atoms::sign())?;
        let coef = field(atoms::coef())?;
        let exp = int(atoms::exp())?;
        let sign = if sign < 0 { "-" } else { "" };
        let text = if coef == atoms::inf().encode(map.get_env()) {
            format!("{sign}Infinity")
        } else if coef == atoms::nan().encode(map.get_env()) {
            "NaN".to_string()
        } else {
            let digits = match super::to_python::integer(py, coef) {
                Ok(digits) => digits,
                Err(error) => return Some(Err(error)),
            };
            format!("{sign}{digits}E{exp}")
        };
        return Some(call(py, "decimal", "Decimal", (text,)));
    }
    None
}

/// A `datetime` with a fixed offset of `offset` seconds from UTC.
fn aware<'py>(
    py: Python<'py>,
    fields: (i64, i64, i64, i64, i64, i64, i64),
    offset: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let datetime = py.import("datetime")?;
    let delta = datetime.getattr("timedelta")?.call1((0, offset))?;
    let zone = datetime.getattr("timezone")?.call1((delta,))?;
    let (year, month, day, hour, minute, second, microsecond) = fields;
    datetime
        .getattr("datetime")?
        .call1((year, month, day, hour, minute, second, microsecond, zone))
}

fn call<'py>(
    py: Python<'py>,
    module: &str,
    class: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    py.import(module)?.getattr(class)?.call1(args)
}

/// The Elixir struct (as a map) for a `datetime.datetime`, `datetime.date` or
/// `decimal.Decimal`, `None` for any other object.
pub fn to_erlang<'a>(env: Env<'a>, object: &Bound<'_, PyAny>) -> Option<PyResult<Term<'a>>> {
    let module = object.get_type().module().ok()?;
    let module = module.to_str().ok()?;
    let py = object.py();
    match module {
        "datetime" => {
            let datetime = py.import("datetime").ok()?;
            if object
                .is_instance(&datetime.getattr("datetime").ok()?)
                .ok()?
            {
                Some(date_time(env, object))
            } else if object.is_instance(&datetime.getattr("date").ok()?).ok()? {
                Some(date(env, object))
            } else {
                None
            }
        }
        "decimal" => {
            let class = py.import("decimal").ok()?.getattr("Decimal").ok()?;
            object
                .is_instance(&class)
                .ok()?
                .then(|| decimal(env, object))
        }
        _ => None,
    }
}

fn date<'a>(env: Env<'a>, object: &Bound<'_, PyAny>) -> PyResult<Term<'a>> {
    let get = |name: &str| object.getattr(name)?.extract::<i64>();
    struct_map(
        env,
        atoms::date(),
        &[
            (atoms::calendar(), atoms::calendar_iso().encode(env)),
            (atoms::year(), get("year")?.encode(env)),
            (atoms::month(), get("month")?.encode(env)),
            (atoms::day(), get("day")?.encode(env)),
        ],
    )
}

fn date_time<'a>(env: Env<'a>, object: &Bound<'_, PyAny>) -> PyResult<Term<'a>> {
    let aware =
        !object.getattr("tzinfo")?.is_none() && !object.call_method0("utcoffset")?.is_none();
    let object = if aware {
        let utc = object
            .py()
            .import("datetime")?
            .getattr("timezone")?
            .getattr("utc")?;
        object.call_method1("astimezone", (utc,))?
    } else {
        object.clone()
    };
    let get = |name: &str| object.getattr(name)?.extract::<i64>();
    let mut fields = vec![
        (atoms::calendar(), atoms::calendar_iso().encode(env)),
        (atoms::year(), get("year")?.encode(env)),
        (atoms::month(), get("month")?.encode(env)),
        (atoms::day(), get("day")?.encode(env)),
        (atoms::hour(), get("hour")?.encode(env)),
        (atoms::minute(), get("minute")?.encode(env)),
        (atoms::second(), get("second")?.encode(env)),
        (atoms::microsecond(), (get("microsecond")?, 6).encode(env)),
    ];
    if !aware {
        return struct_map(env, atoms::naive_date_time(), &fields);
    }
    fields.extend([
        (atoms::time_zone(), "Etc/UTC".encode(env)),
        (atoms::zone_abbr(), "UTC".encode(env)),
        (atoms::utc_offset(), 0.encode(env)),
        (atoms::std_offset(), 0.encode(env)),
    ]);
    struct_map(env, atoms::date_time(), &fields)
}

fn decimal<'a>(env: Env<'a>, object: &Bound<'_, PyAny>) -> PyResult<Term<'a>> {
    let parts = object.call_method0("as_tuple")?;
    let parts = parts.cast::<PyTuple>()?;
    let sign = if parts.get_item(0)?.extract::<i64>()? == 1 {
        -1
    } else {
        1
    };
    let exponent = parts.get_item(2)?;
    let (coef, exp) = match exponent.extract::<i64>() {
        Ok(exp) => {
            let digits = parts.get_item(1)?;
            let text: String = digits
                .try_iter()?
                .map(|digit| digit.and_then(|digit| digit.extract::<u8>()))
                .map(|digit| digit.map(|digit| char::from(b'0' + digit)))
                .collect::<PyResult<_>>()?;
            let text = if text.is_empty() {
                "0".to_string()
            } else {
                text
            };
            let coef = PyInt::type_object(object.py()).call1((text,))?;
            (super::to_erlang::integer(env, coef.cast::<PyInt>()?)?, exp)
        }
        // 'F' is infinity, 'n' and 'N' are NaNs.
        Err(_) if exponent.extract::<String>()? == "F" => (atoms::inf().encode(env), 0),
        Err(_) => (atoms::nan().encode(env), 0),
    };
    struct_map(
        env,
        atoms::decimal(),
        &[
            (atoms::sign(), sign.encode(env)),
            (atoms::coef(), coef),
            (atoms::exp(), exp.encode(env)),
        ],
    )
}

fn struct_map<'a>(env: Env<'a>, kind: Atom, fields: &[(Atom, Term<'a>)]) -> PyResult<Term<'a>> {
    let mut keys = vec![atoms::struct_key().encode(env)];
    let mut values = vec![kind.encode(env)];
    for (key, value) in fields {
        keys.push(key.encode(env));
        values.push(*value);
    }
    Term::map_from_term_arrays(env, &keys, &values)
        .map_err(|_| pyo3::exceptions::PyValueError::new_err("could not build the struct"))
}

# Elixir's :logger, for ExUnit's capture_log (py_channel itself logs through OTP's logger).
{:ok, _} = Application.ensure_all_started(:logger)
# The tracebacks of errors the tests expect are logged at debug level: not shown.
Logger.configure(level: :info)
{:ok, _} = Application.ensure_all_started(:py_channel)
ExUnit.start()

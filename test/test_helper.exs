{:ok, _} = Application.ensure_all_started(:py_channel)
ExUnit.start()

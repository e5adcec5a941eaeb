"""``Atom``, in a module of its own so that ``erlang.testing`` can use it outside the BEAM."""


class Atom(str):
    """An Erlang atom. A ``str``, so ``msg[0] == 'request'`` holds; only an ``Atom``
    becomes an atom on the way back (a plain ``str`` becomes a binary)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"

"""Raw memory for compiled code: atomics, typed views of addresses, calls
through function pointers.

These are the few operations the thread pool (:mod:`fastrelu._pool`) and
the compiled loops (:mod:`fastrelu._loops`) need and Numba does not offer:
they work on addresses held as ``int64`` and compile to single LLVM
instructions.  Atomic operations act on aligned 8-byte words; "acquire" and
"release" have their C++ meaning.  Importing this module imports Numba.
"""

import llvmlite.binding
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_I64 = ir.IntType(64)
_F64 = ir.DoubleType()
_WORDS = 8  # the length of a stack_words buffer
_X86 = llvmlite.binding.get_process_triple().split("-")[0] in ("x86_64", "i386", "i686")


def _word(builder, address, ty=_I64):
    return builder.inttoptr(address, ty.as_pointer())


@intrinsic
def load(typingctx, address):
    """The int64 at *address* (an atomic load, no ordering)."""

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_word(builder, args[0]), "monotonic", 8)

    return types.int64(types.int64), codegen


@intrinsic
def load_acquire(typingctx, address):
    """The int64 at *address*; later reads see what was written before the
    release that stored it."""

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_word(builder, args[0]), "acquire", 8)

    return types.int64(types.int64), codegen


def _store(ordering):
    @intrinsic
    def store(typingctx, address, value):
        def codegen(context, builder, signature, args):
            builder.store_atomic(args[1], _word(builder, args[0]), ordering, 8)
            return context.get_dummy_value()

        return types.none(types.int64, types.int64), codegen

    return store


store = _store("monotonic")
store.__doc__ = "Store the int64 *value* at *address* (atomically, no ordering)."
store_release = _store("release")
store_release.__doc__ = "Store *value* at *address* after every earlier write of this thread."


@intrinsic
def compare_exchange(typingctx, address, expected, new):
    """Replace the int64 at *address* by *new* if it is *expected*; return
    the value found there (equal to *expected* on success)."""

    def codegen(context, builder, signature, args):
        pair = builder.cmpxchg(_word(builder, args[0]), args[1], args[2], "acq_rel", "acquire")
        return builder.extract_value(pair, 0)

    return types.int64(types.int64, types.int64, types.int64), codegen


@intrinsic
def fetch_add(typingctx, address, value):
    """Add *value* to the int64 at *address*, with release and acquire order;
    return the value before."""

    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("add", _word(builder, args[0]), args[1], "acq_rel")

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def exchange(typingctx, address, value):
    """Replace the int64 at *address* by *value*, with release and acquire
    order; return the value before."""

    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("xchg", _word(builder, args[0]), args[1], "acq_rel")

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def load_float(typingctx, address):
    """The float64 at *address* (plain load)."""

    def codegen(context, builder, signature, args):
        return builder.load(_word(builder, args[0], _F64))

    return types.float64(types.int64), codegen


@intrinsic
def store_floats(typingctx, address, values):
    """Store the float64 tuple *values* (of any length) in consecutive words
    from *address* (plain stores)."""
    if not isinstance(values, types.BaseTuple) or any(v != types.float64 for v in values):
        return None

    def codegen(context, builder, signature, args):
        base = _word(builder, args[0], _F64)
        for i in range(len(values)):
            builder.store(builder.extract_value(args[1], i), builder.gep(base, [ir.Constant(_I64, i)]))
        return context.get_dummy_value()

    return types.none(types.int64, values), codegen


def symbol(name):
    """An intrinsic that returns the address of the process-wide symbol
    *name*, which ``llvmlite.binding.add_symbol`` must have defined before
    code that uses it is compiled or loaded from the cache."""

    @intrinsic
    def address(typingctx):
        def codegen(context, builder, signature, args):
            module = builder.module
            variable = module.globals.get(name) or ir.GlobalVariable(module, _I64, name=name)
            return builder.ptrtoint(variable, _I64)

        return types.int64(), codegen

    return address


def external5(name):
    """An intrinsic that calls the C function ``void name(int64 a, int64 b,
    int64 c, int64 d, int64 e)``, a process-wide symbol that
    ``llvmlite.binding.add_symbol`` must have defined before code that uses
    it is compiled or loaded from the cache."""

    @intrinsic
    def call(typingctx, a, b, c, d, e):
        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(ir.VoidType(), [_I64] * 5)
            function = builder.module.globals.get(name) or ir.Function(builder.module, fnty, name)
            builder.call(function, args)
            return context.get_dummy_value()

        return types.none(*(types.int64,) * 5), codegen

    return call


@intrinsic
def pointer(typingctx, address, dtype):
    """*address* as a pointer to *dtype*'s elements, for ``numba.carray``."""
    element = dtype.dtype

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(element).as_pointer())

    return types.CPointer(element)(types.int64, dtype), codegen


def _stack(words, align=8):
    @intrinsic
    def buffer(typingctx):
        def codegen(context, builder, signature, args):
            space = builder.alloca(ir.ArrayType(_I64, words))
            space.align = align
            return builder.ptrtoint(space, _I64)

        return types.int64(), codegen

    return buffer


stack_words = _stack(_WORDS)
stack_words.__doc__ = "The address of a buffer of 8 int64 words on the caller's stack."
STAGING_BYTES = 2048
stack_staging = _stack(STAGING_BYTES // 8, align=64)
stack_staging.__doc__ = "The address of a 2 KiB buffer on the caller's stack, on a 64-byte boundary."
stack_codes = _stack(64, align=64)
stack_codes.__doc__ = "The address of a 512-byte buffer on the caller's stack, on a 64-byte boundary."


def _stream_line(source_align):
    @intrinsic
    def stream(typingctx, destination, source):
        def codegen(context, builder, signature, args):
            line = ir.VectorType(_I64, 8)
            value = builder.load(builder.inttoptr(args[1], line.as_pointer()), align=source_align)
            store = builder.store(value, builder.inttoptr(args[0], line.as_pointer()), align=64)
            store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
            return context.get_dummy_value()

        return types.none(types.int64, types.int64), codegen

    return stream


stream_line = _stream_line(64)
stream_line.__doc__ = """Copy the 64 bytes at *source* to *destination* (both 64-byte aligned)
with a non-temporal store: past the caches, without reading the
destination's line first."""
stream_line_unaligned = _stream_line(1)
stream_line_unaligned.__doc__ = """:func:`stream_line` from a *source* at any address (*destination*
is 64-byte aligned)."""


@intrinsic
def stream_fence(typingctx):
    """Order the non-temporal stores before it before every later store."""

    def codegen(context, builder, signature, args):
        if _X86:  # where non-temporal stores are weakly ordered
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=fnty), [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def call_chunk(typingctx, function, args, lo, hi):
    """Call the C function ``void f(int64 args, int64 lo, int64 hi)`` at
    address *function*."""

    def codegen(context, builder, signature, values):
        fnty = ir.FunctionType(ir.VoidType(), [_I64, _I64, _I64])
        builder.call(builder.inttoptr(values[0], fnty.as_pointer()), values[1:])
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64, types.int64), codegen


@intrinsic
def fence(typingctx):
    """A full memory barrier: no load or store moves across it."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


def _python_lock_call(name, return_type):
    """Call CPython's ``name(PyThread_type_lock, ...)`` on the lock whose
    address is the first argument; these need no GIL."""
    extra = {"PyThread_acquire_lock": [ir.IntType(32)]}.get(name, [])

    @intrinsic
    def call(typingctx, lock):
        def codegen(context, builder, signature, args):
            ret = context.get_value_type(return_type)
            fnty = ir.FunctionType(ret, [ir.IntType(8).as_pointer(), *extra])
            function = builder.module.globals.get(name) or ir.Function(builder.module, fnty, name)
            values = [builder.inttoptr(args[0], ir.IntType(8).as_pointer())]
            values += [ir.Constant(ir.IntType(32), 1)] * len(extra)  # waitflag: block
            result = builder.call(function, values)
            return context.get_dummy_value() if return_type == types.none else result

        return return_type(types.int64), codegen

    return call


lock_acquire = _python_lock_call("PyThread_acquire_lock", types.int32)
lock_acquire.__doc__ = "Acquire the Python lock at this address, waiting as long as it takes."
lock_release = _python_lock_call("PyThread_release_lock", types.none)
lock_release.__doc__ = "Release the Python lock at this address (from any thread)."


@intrinsic
def spin_pause(typingctx):
    """Tell the processor that this thread is spinning: on x86, a ``pause``,
    which saves power and lets a hyper-threaded sibling run; other targets
    spin without a hint."""

    def codegen(context, builder, signature, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=fnty), [])
        return context.get_dummy_value()

    return types.none(), codegen

"""rnnfast inside onnxruntime: `InferenceSession` is onnxruntime's, with the RNN, GRU and LSTM
nodes run by rnnfast through onnxruntime-extensions' Python custom operators and every other
node run by onnxruntime.

At construction each recurrent node whose weights are constant (initializers, or made of them
alone by shape operators: `_fold`) becomes an rnnfast module, built and packed once, and the node
becomes `ai.onnx.contrib::RnnfastRecurrent` (float64: `RnnfastRecurrentDouble`, which
onnxruntime's own LSTM lacks) with inputs X, sequence_lens, initial_h, initial_c (an empty tensor
standing for an absent one) and outputs Y, Y_h, Y_c, naming its module by a key attribute. Nodes
left only to compute those weights are removed. What is not rewritten stays onnxruntime's, with
the reason in `rnnfast_skipped`: float16 nodes, weights fed at run time, attributes rnnfast does
not compute (clip, input_forget, other activations).

onnxruntime-extensions registers Python operators process-wide and hands each call the node's
attributes, so the modules sit in a registry of weak references keyed by that attribute: an
entry lives exactly as long as its session. Its stock callback turns every output into a Python
list (`.tolist()`), which costs more than the recurrent layer itself at B >= 16, and an exception
raised in an operator ends the process (its C++ lets it escape). The callback is wrapped: for
rnnfast's operators outputs go back as arrays (the extension copies any buffer) and no exception
leaves it (see `_Errors`); every other operator's call goes through the stock callback unchanged.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
import weakref
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import _core
from ._fold import WEIGHT_INPUTS, constant_values, weight_names
from ._nodes import build_module, run_recurrent
from ._weights import GATES

DOMAIN = "ai.onnx.contrib"
KEY = "rnnfast_kernel"
# One operator per dtype (a Python operator's types are fixed): its name, and the name of the
# empty tensor that stands for an absent initial state.
OPS: dict[np.dtype, tuple[str, str]] = {
    np.dtype(np.float32): ("RnnfastRecurrent", "rnnfast_empty_float"),
    np.dtype(np.float64): ("RnnfastRecurrentDouble", "rnnfast_empty_double"),
}
_EMPTY_I32 = "rnnfast_empty_int32"

_kernels: weakref.WeakValueDictionary[str, _Kernel] = weakref.WeakValueDictionary()
_registered = threading.Lock()
_op_ids: dict[int, np.dtype] = {}  # the extension's ids of our operators, once registered


class _Errors:
    """What went wrong in a session's rnnfast nodes during a run, by the thread that ran the node.

    onnxruntime-extensions ends the process when a Python operator raises (its C++ lets the
    exception escape), so a kernel never raises: it records the error here, hands onnxruntime
    empty outputs, and the session's `run` raises the error once onnxruntime returns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_thread: dict[int, BaseException] = {}

    def record(self, error: BaseException) -> None:
        with self._lock:
            self._by_thread.setdefault(threading.get_ident(), error)

    def take(self) -> BaseException | None:
        """The calling thread's error, else (a node run on one of onnxruntime's threads, in
        its parallel execution mode) any recorded."""
        with self._lock:
            error = self._by_thread.pop(threading.get_ident(), None)
            if error is None and self._by_thread:
                error = self._by_thread.pop(next(iter(self._by_thread)))
            return error


def _failed(dtype: Any) -> tuple[np.ndarray, ...]:
    """What onnxruntime gets from a failed kernel: empty outputs of the operator's dtype."""
    return (np.zeros(0, dtype),) * 3


class _Kernel:
    """One rewritten node: its module (packed once) and what run_recurrent needs of the node."""

    def __init__(
        self, node: onnx.NodeProto, attrs: dict[str, Any], module: Any, errors: _Errors
    ) -> None:
        self.op, self.attrs, self.module = node.op_type, attrs, module
        self.where = f"node {node.name or node.output[0]!r} ({node.op_type})"
        self.errors = errors
        self.lock = threading.Lock()  # one session run from several threads: one call at a time

    def __call__(self, x: Any, lens: Any, h0: Any, c0: Any) -> tuple[np.ndarray, ...]:
        args = [x, None, None, None, lens if lens.size else None]
        args += [h0 if h0.size else None, c0 if c0.size else None]
        # onnxruntime's threads use the other cores between rnnfast's nodes: a small node runs
        # on the calling thread alone (runtime/threads.h set_small_calls_alone).
        alone_before = _core.set_small_calls_alone(True)
        try:
            with self.lock:
                outs = run_recurrent(self.op, self.attrs, args, self.module, self.where)
        except BaseException as error:  # Ctrl-C included: raised by run() once onnxruntime returns
            self.errors.record(error)
            return _failed(self.module.dtype)
        finally:
            _core.set_small_calls_alone(alone_before)
        if len(outs) == 2:  # RNN and GRU have no Y_c: an empty one fills the third output
            outs.append(np.zeros(0, self.module.dtype))
        return tuple(outs)


def _run_kernel(dtype: Any, feed: Any, key: str) -> tuple[np.ndarray, ...]:
    kernel = _kernels.get(key)
    if kernel is None:  # nobody to raise to: say it, and let onnxruntime fail on empty outputs
        sys.stderr.write(
            f"rnnfast: no rnnfast module for key {key!r}; a model rewritten by "
            "rnnfast.onnx.InferenceSession runs only inside the session that rewrote it\n"
        )
        return _failed(dtype)
    return kernel(*feed)


def _register() -> None:
    """Registers the operators with onnxruntime-extensions once per process, and wraps its
    callback for them (see the module's doc)."""
    with _registered:
        if _op_ids:
            return
        from onnxruntime_extensions import PyCustomOpDef, _ocos, onnx_op

        def unused(*args: Any, **kwargs: Any) -> Any:  # the wrapped callback runs the kernels
            raise RuntimeError("rnnfast's operators run through rnnfast's callback")

        for dtype, (op_type, _) in OPS.items():
            real = PyCustomOpDef.dt_float if dtype == np.float32 else PyCustomOpDef.dt_double
            opdef = onnx_op(
                op_type=op_type,
                inputs=[real, PyCustomOpDef.dt_int32, real, real],
                outputs=[real, real, real],
                attrs={KEY: PyCustomOpDef.dt_string},
            )(unused)
            _op_ids[id(opdef)] = dtype
        stock = _ocos._on_pyop_invocation

        def invoke(k_id: int, feed: Any, attributes: Any) -> tuple:
            dtype = _op_ids.get(k_id)
            if dtype is None:
                return stock(k_id, feed, attributes)
            try:
                outs = _run_kernel(dtype, feed, str(attributes.get(KEY, "")))
            except BaseException as error:  # never into the extension, which would abort
                sys.stderr.write(f"rnnfast: {error!r}\n")
                outs = _failed(dtype)
            flat: list[Any] = [k_id]
            for out in outs:
                flat += [out.shape, np.ascontiguousarray(out).reshape(-1)]
            return tuple(flat)

        PyCustomOpDef.install_hooker(invoke)


def _skip_reason(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> str | None:
    ins = list(node.input) + [""] * 8
    for i in WEIGHT_INPUTS[:2]:
        if ins[i] not in values:
            return f"input {ins[i]!r} is fed at run time"
    for i in WEIGHT_INPUTS[2:]:
        if ins[i] and ins[i] not in values:
            return f"input {ins[i]!r} is fed at run time"
    if values[ins[1]].dtype not in OPS:
        return f"{values[ins[1]].dtype} weights (rnnfast runs float32 and float64)"
    return None


def _load(model: Any) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    raise TypeError(
        f"path_or_bytes: expected a path, bytes or an onnx.ModelProto, got {type(model).__name__}"
    )


def rewrite(
    model: onnx.ModelProto, errors: _Errors
) -> tuple[onnx.ModelProto, dict[str, _Kernel], dict[str, str]]:
    """A copy of `model` whose eligible recurrent nodes run rnnfast's operator, the kernels by
    key (reporting to `errors`), and the recurrent nodes left to onnxruntime with the reason."""
    graph = model.graph
    values = constant_values(graph, weight_names(graph))
    kernels: dict[str, _Kernel] = {}
    skipped: dict[str, str] = {}
    nodes = []
    for node in graph.node:
        if node.op_type not in GATES or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        name = node.name or node.output[0]
        reason = _skip_reason(node, values)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        module = None
        if reason is None:
            ins = list(node.input) + [""] * 8
            w, r, b, p = (values[ins[i]] if ins[i] else None for i in WEIGHT_INPUTS)
            try:
                module = build_module(node.op_type, attrs, w, r, b, p, f"node {name!r}")
            except (ValueError, TypeError, NotImplementedError) as e:
                reason = str(e)
        if reason is not None:
            skipped[name] = reason
            nodes.append(node)
            continue
        key = uuid.uuid4().hex
        kernels[key] = _Kernel(node, attrs, module, errors)
        ins = list(node.input) + [""] * 8
        op_type, empty = OPS[values[ins[1]].dtype]
        inputs = [ins[0], ins[4] or _EMPTY_I32, ins[5] or empty, ins[6] or empty]
        outs = list(node.output) + [""] * 3
        outputs = [o or f"{key}_unused_{i}" for i, o in enumerate(outs[:3])]
        nodes.append(
            helper.make_node(op_type, inputs, outputs, name=name, domain=DOMAIN, **{KEY: key})
        )
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    used = set().union(*(_reads(n) for n in out.graph.node))
    inits = [t for t in graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    empties: dict[str, np.dtype] = {_EMPTY_I32: np.dtype(np.int32)}
    empties.update((empty, dtype) for dtype, (_, empty) in OPS.items())
    out.graph.initializer.extend(
        numpy_helper.from_array(np.zeros(0, dtype), name)
        for name, dtype in empties.items()
        if name in used
    )
    if kernels and not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out, kernels, skipped


def _reads(node: onnx.NodeProto) -> set[str]:
    """The names a node reads: its inputs, and those the nodes of its subgraphs (If, Loop,
    Scan bodies) read, which may be the outer graph's."""
    names = {i for i in node.input if i}
    for attr in node.attribute:
        graphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for graph in graphs:
            for inner in graph.node:
                names |= _reads(inner)
    return names


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """`nodes` without those whose outputs nothing reads (the weights' own computations, once
    their recurrent node no longer takes them)."""
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed |= _reads(node)
    return keep[::-1]


class InferenceSession:
    """onnxruntime.InferenceSession with the recurrent nodes on rnnfast: takes what it takes
    (a path, bytes or an onnx.ModelProto; sess_options; providers) and answers run,
    get_inputs, get_outputs, get_modelmeta, ... as it does (the rest is forwarded).

    `rnnfast_nodes` lists the nodes rnnfast runs; `rnnfast_skipped` maps the others to why.
    The caller's SessionOptions are not changed: a copy gets the custom-operator library, with
    the caller's settings and the configuration entries in `_CONFIG_KEYS`; onnxruntime's
    workers do not spin unless the caller set `session.intra_op.allow_spinning`."""

    def __init__(
        self,
        path_or_bytes: Any,
        sess_options: Any = None,
        providers: Any = None,
        provider_options: Any = None,
        **kwargs: Any,
    ) -> None:
        try:
            import onnxruntime as ort
            from onnxruntime_extensions import get_library_path
        except ImportError as error:
            raise ImportError(
                "rnnfast.onnx.InferenceSession needs onnxruntime and onnxruntime-extensions: "
                "pip install onnxruntime onnxruntime-extensions (or rnnfast[onnx])"
            ) from error
        self._errors = _Errors()
        model, kernels, skipped = rewrite(_load(path_or_bytes), self._errors)
        _register()
        options = _copy_options(ort, sess_options)
        options.register_custom_ops_library(get_library_path())
        self._kernels = kernels  # the registry holds them only as long as the session
        self.rnnfast_nodes = sorted(k.where for k in kernels.values())
        self.rnnfast_skipped = skipped
        self._session = ort.InferenceSession(
            model.SerializeToString(),
            options,
            providers=providers or ["CPUExecutionProvider"],
            provider_options=provider_options,
            **kwargs,
        )
        _kernels.update(kernels)

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> list[Any]:
        return self._checked(self._session.run, output_names, input_feed, run_options)

    def run_with_ort_values(
        self, output_names: Any, input_dict_ort_values: Any, run_options: Any = None
    ) -> Any:
        return self._checked(
            self._session.run_with_ort_values, output_names, input_dict_ort_values, run_options
        )

    def run_with_iobinding(self, iobinding: Any, run_options: Any = None) -> Any:
        return self._checked(self._session.run_with_iobinding, iobinding, run_options)

    def run_with_ortvaluevector(self, *args: Any) -> Any:
        return self._checked(self._session.run_with_ortvaluevector, *args)

    def run_async(
        self,
        output_names: Any,
        input_feed: Any,
        callback: Any,
        user_data: Any,
        run_options: Any = None,
    ) -> Any:
        """As onnxruntime's; an error in an rnnfast node reaches `callback` as its error
        string (onnxruntime's convention), with no outputs."""

        def checked(outputs: Any, data: Any, err: str) -> None:
            error = self._errors.take()
            if error is not None:
                callback(None, data, f"{type(error).__name__}: {error}")
            else:
                callback(outputs, data, err)

        return self._session.run_async(output_names, input_feed, checked, user_data, run_options)

    def _checked(self, call: Any, *args: Any) -> Any:
        """onnxruntime's call, then any error an rnnfast node recorded (nodes never raise into
        the extension: see _Errors)."""
        try:
            outputs = call(*args)
        except Exception as failure:  # onnxruntime's, perhaps on a failed node's empty outputs
            error = self._errors.take()
            if error is not None:
                raise error from failure
            raise
        error = self._errors.take()
        if error is not None:
            raise error
        return outputs

    def get_inputs(self) -> Any:
        return self._session.get_inputs()

    def get_outputs(self) -> Any:
        return self._session.get_outputs()

    def get_modelmeta(self) -> Any:
        return self._session.get_modelmeta()

    def get_providers(self) -> Any:
        return self._session.get_providers()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._session, name)


_OPTION_FIELDS = (
    "enable_cpu_mem_arena",
    "enable_mem_pattern",
    "enable_mem_reuse",
    "enable_profiling",
    "execution_mode",
    "execution_order",
    "graph_optimization_level",
    "inter_op_num_threads",
    "intra_op_num_threads",
    "log_severity_level",
    "log_verbosity_level",
    "logid",
    "optimized_model_filepath",
    "profile_file_prefix",
    "use_deterministic_compute",
)


# Session configuration entries copied from the caller's options when set there (onnxruntime
# cannot list the ones that are set). Spinning is switched off unless the caller chose: an
# onnxruntime worker spinning after a MatMul takes a core from the rnnfast node that follows.
_CONFIG_KEYS = (
    "session.intra_op.allow_spinning",
    "session.inter_op.allow_spinning",
    "session.set_denormal_as_zero",
    "session.use_env_allocators",
    "session.load_model_format",
    "session.save_model_format",
    "session.disable_prepacking",
    "session.use_ort_model_bytes_directly",
    "session.intra_op_thread_affinities",
    "session.dynamic_block_base",
)
_NO_SPINNING = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def _copy_options(ort: Any, given: Any) -> Any:
    """A new SessionOptions with the given one's settings (registering a library changes the
    object it is called on, and the caller's options are theirs)."""
    options = ort.SessionOptions()
    if given is not None and not isinstance(given, ort.SessionOptions):
        raise TypeError(
            f"sess_options: expected an onnxruntime.SessionOptions, got {type(given).__name__}"
        )
    entries = dict(_NO_SPINNING)
    if given is not None:
        for field in _OPTION_FIELDS:
            if hasattr(given, field):
                setattr(options, field, getattr(given, field))
        for key in _CONFIG_KEYS:
            value = given.get_session_config_entry(key) if _has_entry(given, key) else None
            if value is not None:
                entries[key] = value
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return options


def _has_entry(options: Any, key: str) -> bool:
    try:
        options.get_session_config_entry(key)
    except Exception:  # onnxruntime raises its own error type for an entry not set
        return False
    return True


__all__ = ["InferenceSession", "rewrite"]

"""Mutation check (issue 11): deliberate one-line bugs that the tests must catch.

Run with `make mutants` (or `.venv/bin/python tests/mutation_check.py [--only NAME ...]`).
This file is a script, not a test module: pytest does not collect it (its name does not match
`test_*.py`, and it defines no test functions).

Each mutant names a file, an exact snippet that must occur there exactly once, its replacement
(a small deliberate bug in a rewrite rule, a gradient, generated code, a size check, a kernel),
and the few pytest node ids that must catch it. For each mutant the repository is copied to a
temporary directory, the mutation applied, and `python -m pytest -x <targets>` run in the copy
with PYTHONPATH pointing at it (checked: `symgrad.__file__` is the copy's), so the mutated
package is imported instead of the editable install. A mutant is caught when pytest reports
failing tests (or a mutated module that no longer imports).

Compiled functions are cached in one directory under the temporary directory, seeded from the
repository's cache: the cache key covers the generated source and the runtime modules Numba
inlines (jit.py), so a mutant never reuses code compiled from other sources.

The working tree is copied once (a snapshot: every mutant sees the same sources even while the
tree is being edited), and the targets are first run on it unmutated (a failing baseline would
make every mutant look caught; the run also warms the caches the mutants' copies start from). The script prints a table and exits non-zero if the baseline fails, a
snippet is missing or ambiguous (the code changed under it: update the mutant), a target
selects no test, or any mutant survives.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_WORKERS = 2
TIMEOUT_S = 900  # per pytest run
COPY_IGNORE = (".venv", ".git", ".symgrad-cache", ".pytest_cache", ".hypothesis", "*.egg-info",
               "symgrad-demo", "build")

CORRECTNESS = "tests/test_correctness.py"
SIMPLIFY = "tests/core/test_simplify.py"
OPS = "tests/core/test_ops.py"
CORE = "tests/core/test_core.py"
CAUGHT = "tests/test_mutants_caught.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str        # relative to the repository root
    snippet: str     # must occur exactly once in the file
    replacement: str
    targets: tuple   # pytest node ids (files, or file::test[param])
    note: str = ""


MUTANTS = [
    Mutant("sum_of_distribution_any_axis", "symgrad/core/simplify.py",
           'return OPS[node.op].sums_to_one and node.attrs["axis"] == axis',
           'return OPS[node.op].sums_to_one',
           (f"{CORRECTNESS}::test_the_q_minus_p_rule_needs_the_fact_along_the_same_axis",),
           "q - p fires for a distribution declared along another axis"),
    Mutant("max_gradient_no_tie_split", "symgrad/core/ops.py",
           'return hit / _expand(make("sum", [hit], {"axis": axis}), node)',
           'return hit',
           (f"{CAUGHT}::test_max_gradient_is_split_evenly_among_ties", f"{OPS}::test_vjp"),
           "max's gradient goes in full to every tied element"),
    Mutant("slice_read_drops_start", "symgrad/compiler/codegen.py",
           '(f"{j} + {offset(start)}" if start else j)',
           '(j if start else j)',
           (f"{CAUGHT}::test_elementwise_loops_read_slices_at_their_offsets",),
           "an elementwise loop reads a slice x[1:] at x[0:]"),
    Mutant("slice_read_step_drops_start", "symgrad/compiler/codegen.py",
           'return [f"{offset(start)} + {offset(step)} * {_term(j)}" if step != 1 else',
           'return [f"{offset(step)} * {_term(j)}" if step != 1 else',
           (f"{CAUGHT}::test_elementwise_loops_read_slices_at_their_offsets",),
           "a strided slice x[1::2] read in place at x[0::2]"),
    Mutant("transposed_read_by_perm", "symgrad/compiler/codegen.py",
           "return [index[perm.index(axis)] for axis in range(len(perm))]",
           "return [index[perm[axis]] for axis in range(len(perm))]",
           ("tests/compiler/test_lazy_transpose.py::test_a_convolution_layer_is_a_product_and_one_loop",),
           "a transpose read in place through the permutation, not its inverse"),
    Mutant("pool_tiles_no_tie_split", "symgrad/runtime/kernels.py",
           "share = np.nan if nan else (g2[r, b] if count == 1 else g2[r, b] / count)",
           "share = np.nan if nan else g2[r, b]",
           ("tests/core/test_conv.py",),
           "max pooling's cotangent, where windows tile the plane, given whole to every tied maximum"),
    Mutant("pool_quads_no_tie_split", "symgrad/runtime/kernels.py",
           "share = nan_share if nan else gr[b] / (one * e0 + one * e1 + one * e2 + one * e3)",
           "share = nan_share if nan else gr[b]",
           ("tests/core/test_conv.py",),
           "max pooling's cotangent over 2×2 tiles given whole to every tied maximum"),
    Mutant("pool_quads_nan_dropped", "symgrad/runtime/kernels.py",
           "o[b] = np.nan if nan else m",
           "o[b] = m",
           ("tests/core/test_conv.py", "tests/core/test_ops.py"),
           "max pooling over 2×2 tiles loses a NaN that is not the window's last tap"),
    Mutant("merge_transposed_axes_out_of_order", "symgrad/compiler/codegen.py",
           "(m[d] is None or m[d] == m[d - 1] + 1) for m in maps):",
           "(m[d] is None or m[d] != m[d - 1]) for m in maps):",
           ("tests/compiler/test_lazy_transpose.py",),
           "a loop merging axes that a transposed operand reads apart"),
    Mutant("transpose_copy_merges_apart_axes", "symgrad/core/ops.py",
           "if runs and runs[-1][-1] + 1 == axis:",
           "if runs and runs[-1][-1] < axis:",
           ("tests/compiler/test_lazy_transpose.py",),
           "a transpose copied with axes merged that do not stay side by side"),
    Mutant("in_place_update_reading_itself_moved", "symgrad/compiler/codegen.py",
           "        if _reads_moved(program, code, value, variable):",
           "        if False:",
           ("tests/compiler/test_lazy_transpose.py",),
           "W = 2·Wᵀ + 1 written into W while its loop still reads W transposed"),
    Mutant("product_by_images_skips_an_image", "symgrad/runtime/kernels.py",
           "        for n in range(n_):\n            block, rows = a[:, n * p_:(n + 1) * p_], x[n].T",
           "        for n in range(n_ - 1):\n            block, rows = a[:, n * p_:(n + 1) * p_], x[n].T",
           ("tests/runtime/test_blas.py",),
           "a filter gradient summed over every image but the last (a row-major)"),
    Mutant("product_by_images_by_columns_skips_an_image", "symgrad/runtime/kernels.py",
           "            for n in range(n_):\n                if n == 0:\n                    gemm(x[n], columns[:p_], total)",
           "            for n in range(n_ - 1):\n                if n == 0:\n                    gemm(x[n], columns[:p_], total)",
           ("tests/compiler/test_lazy_transpose.py", "tests/runtime/test_blas.py"),
           "a filter gradient summed over every image but the last (a the columns transposed)"),
    # direct convolutions (issue 14)
    Mutant("direct_gradient_meets_unheld_inputs", "symgrad/runtime/convolution.py",
           "xs = builder.select(inside, _load(builder, X, builder.add(taps[j], at)), zero)",
           "xs = _load(builder, X, builder.add(taps[j], at))",
           ("tests/compiler/test_direct_convolution.py",),
           "the filter gradient multiplies a 0 cotangent by an input past a row's last output (0·inf)"),
    Mutant("direct_dilation_ignored", "symgrad/runtime/convolution.py",
           "offsets[(c * kh + i) * kw + j] = c * hp * wp + i * dh * wp + j * dw",
           "offsets[(c * kh + i) * kw + j] = c * hp * wp + i * wp + j * dw",
           ("tests/compiler/test_direct_convolution.py",),
           "a direct convolution's taps read as if rows were never dilated"),
    Mutant("direct_last_tile_of_filters_dropped", "symgrad/runtime/convolution.py",
           "        for o in range(0, filters, FILTERS):\n            for p in range(0, length, tile):",
           "        for o in range(0, o_ - FILTERS + 1, FILTERS):\n            for p in range(0, length, tile):",
           ("tests/compiler/test_direct_convolution.py",),
           "filters past the last whole tile never computed (7 filters in tiles of 2)"),
    Mutant("direct_across_last_positions_dropped", "symgrad/runtime/convolution.py",
           "            for r in range(0, count, ACROSS):",
           "            for r in range(0, count - ACROSS, ACROSS):",
           ("tests/compiler/test_direct_convolution.py",),
           "the last tile of positions never computed when the sums run across filters"),
    Mutant("direct_across_gradient_first_taps_skipped", "symgrad/runtime/convolution.py",
           "            for t in range(0, padded_taps, ACROSS):",
           "            for t in range(ACROSS, padded_taps, ACROSS):",
           ("tests/compiler/test_direct_convolution.py",),
           "the filter gradient across filters skips its first tile of taps"),
    Mutant("direct_layout_always_along_the_strip", "symgrad/runtime/tiles.py",
           'return "across_filters" if across > ACROSS_COST * along else "along_strip"',
           'return "along_strip"',
           ("tests/compiler/test_direct_convolution.py",),
           "many filters summed along a strip mostly past the outputs (LeNet's second layer)"),
    Mutant("direct_product_read_elsewhere_left_unwritten", "symgrad/compiler/codegen.py",
           "    if code.consumers.get(names[value]) != [reader] or names[value] in taken:",
           "    if names[value] in taken:",
           ("tests/compiler/test_direct_convolution.py",),
           "a convolution's product that an output also reads is never written"),
    Mutant("direct_input_freed_before_its_filter_gradient", "symgrad/compiler/codegen.py",
           "            lifetimes[operand] = max(lifetimes.get(operand, -1), step_index[value])",
           "            pass",
           ("tests/compiler/test_direct_convolution.py",),
           "a direct kernel's input handed its workspace slot on once its (unwritten) columns were"),
    Mutant("direct_work_limit_ignored", "symgrad/compiler/codegen.py",
           "columns.shape[1] * filters > DIRECT_MAX_WORK",
           "False",
           ("tests/compiler/test_direct_convolution.py",),
           "every stride-1 convolution runs direct, however many taps and filters"),
    Mutant("direct_strip_fill_ignored", "symgrad/compiler/codegen.py",
           "    if max(forward) < 0.5:\n        return None",
           "    if False:\n        return None",
           ("tests/compiler/test_direct_convolution.py",),
           "a convolution of small images runs direct, its tiles mostly past the outputs"),
    Mutant("release_first_ignores_bytes", "symgrad/compiler/schedule.py",
           "        ended = sum(weights[s] for s in reads[node] if len(readers[s]) == 1)",
           "        ended = 0",
           ("tests/compiler/test_release_first.py",),
           "the schedule back to the depth-first walk: a column matrix read back from memory"),
    Mutant("release_first_runs_a_step_too_soon", "symgrad/compiler/schedule.py",
           "            if waiting[user] == 0:\n                current[user] = priority(user)",
           "            if waiting[user] <= 1:\n                current[user] = priority(user)",
           ("tests/compiler/test_release_first.py",),
           "a step scheduled when all but one of its inputs are computed"),
    Mutant("routing_ignores_ties", "symgrad/runtime/kernels.py",
           "            share = np.nan if nan else 1.0 / count\n",
           "            share = np.nan if nan else 1.0\n",
           ("tests/core/test_partial.py", "tests/core/test_conv.py"),
           "tied maxima each given the whole cotangent in the routing of a bound HVP"),
    Mutant("routed_spread_ignores_routing", "symgrad/runtime/kernels.py",
           "                        o4[r, i, b, j] = r4[r, i, b, j] * v\n",
           "                        o4[r, i, b, j] = v\n",
           ("tests/core/test_partial.py", "tests/core/test_conv.py"),
           "a bound HVP's pooling cotangent spread to every tap, not the maxima"),
    Mutant("sum_of_distribution_no_scalar_spread", "symgrad/core/simplify.py",
           "    if node.ndim == 0:\n        return node\n",
           "",
           ("tests/core/test_simplify.py",),
           "q - p lost when the gradient reaching the sum is a folded 0-d constant"),
    Mutant("padded_window_inclusive_stop", "symgrad/compiler/codegen.py",
           'f"{start} <= {j} < {stop}"',
           'f"{start} <= {j} <= {stop}"',
           ("tests/compiler/test_segmented_loops.py::test_a_loop_reading_many_windows_tests_each_element",),
           "the gradient of a slice, tested element by element, reads one element past its window"),
    Mutant("call_time_static_shape_unchecked", "symgrad/core/dims.py",
           'if d != c:',
           'if False:',
           (f"{CAUGHT}::test_a_fed_node_must_have_the_shape_the_graph_knows",
            f"{CORRECTNESS}::test_an_unknown_size_unified_with_a_fixed_one_is_checked"),
           "a fed node's static shape is not compared with the concrete one (through the public "
           "API an equivalent mutant: arguments are checked first, and every shape rule "
           "re-derives the static sizes)"),
    Mutant("elementwise_shape_rule_unchecked", "symgrad/core/ops.py",
           'if len(node.shape) != len(shape) or any(m is False for m in merged):',
           'if False:',
           (f"{CORRECTNESS}::test_an_unknown_size_unified_with_a_fixed_one_is_checked",
            f"{CORRECTNESS}::test_a_sliced_size_must_fit_its_partner", CORE),
           "elementwise operands of different sizes accepted"),
    Mutant("extremum_drops_nan", "symgrad/core/scalar.py",
           'text = f"({text} if ({text} {better} {b} or {text} != {text}) else {b})"',
           'text = f"({text} if ({text} {better} {b}) else {b})"',
           (f"{CORRECTNESS}::test_nan_and_inf_propagate_as_in_numpy",),
           "compiled maximum/minimum/relu lose a NaN operand"),
    Mutant("repeats_cancel_in_fused_bodies", "symgrad/core/ops.py",
           'if any(position[key].name not in used for key in read):  # a repeat cancelled',
           'if False:',
           (f"{CORRECTNESS}::test_nan_and_inf_propagate_as_in_numpy",),
           "(x - x) · y fuses to 0, though op by op it is NaN where x or y is infinite"),
    Mutant("softsign_argument_unparenthesised", "symgrad/core/scalar.py",
           'x = f"({self._print(expr.args[0])})"',
           'x = self._print(expr.args[0])',
           (f"{CORRECTNESS}::test_a_function_of_a_compound_argument_is_printed_whole",),
           "softsign(a - b) compiled as a - b / (1 + |a - b|)"),
    Mutant("number_zero_is_folded", "symgrad/core/scalar.py",
           "        return ZERO\n",
           "        return sympy.Integer(0)\n",
           (f"{CORRECTNESS}::test_nan_and_inf_propagate_as_in_numpy",),
           "f·0 folds to 0 in compiled code though inf·0 is NaN"),
    Mutant("log_softmax_rounds_m_plus_s", "symgrad/runtime/kernels.py",
           "                rows[i, k] = rows[i, k] - log_sum",
           "                rows[i, k] = x[i * r + k] - (m[i, 0] + log_sum)",
           (f"{CORRECTNESS}::test_float32_softmax_family_keeps_its_digits",),
           "float32 log_softmax loses the digits of log Σ exp"),
    Mutant("distribution_tolerance_huge", "symgrad/core/ops.py",
           "return float(np.sqrt(np.finfo(dtype).eps))",
           "return 1e9",
           (f"{CORRECTNESS}::test_a_broken_declaration_raises_in_the_interpreter_too",
            f"{CORRECTNESS}::test_cross_entropy_gradient_is_exact_for_any_label_rows"),
           "a declared distribution whose rows do not sum to 1 is accepted"),
    Mutant("distribution_compiled_check_removed", "symgrad/core/ops.py",
           'code.check(f"kernels.distribution_violation(',
           'code.check(f"True or kernels.distribution_violation(',
           (f"{CORRECTNESS}::test_cross_entropy_gradient_is_exact_for_any_label_rows",
            f"{CORRECTNESS}::test_a_broken_declaration_changes_no_variable"),
           "compiled code trusts a declared distribution without checking it"),
    Mutant("distribution_violation_passes_nan", "symgrad/runtime/kernels.py",
           "if not abs(total - 1.0) <= tolerance:\n                return i\n",
           "if abs(total - 1.0) > tolerance:\n                return i\n",
           (f"{CAUGHT}::test_a_nan_label_row_breaks_the_declaration_when_compiled",),
           "a NaN label row passes the compiled distribution check"),
    Mutant("sum_of_broadcast_off_by_one", "symgrad/core/simplify.py",
           "return spread * float(inner.shape[axis])",
           "return spread * float(inner.shape[axis] - 1)",
           (f"{SIMPLIFY}::test_rule_keeps_values_and_gradients",),
           "Σ of a broadcast multiplies by one less than the size"),
    Mutant("arcp_for_division_by_operand", "symgrad/core/scalar.py",
           "return any(isinstance(e, sympy.Pow) and e.exp.is_number and e.exp < 0 and not e.base.is_number",
           "return False and any(isinstance(e, sympy.Pow) and e.exp.is_number and e.exp < 0 and not e.base.is_number",
           (f"{CORRECTNESS}::test_float32_sqrt_derivative_at_zero_and_infinity",),
           "loops that divide by an operand compiled with arcp (1/(2·sqrt(0)) = NaN)"),
    Mutant("log_softmax_vjp_sign", "symgrad/core/ops.py",
           "return [g - softmax(node.inputs[0], axis) * sum(g, axis=axis, keepdims=True)]",
           "return [g + softmax(node.inputs[0], axis) * sum(g, axis=axis, keepdims=True)]",
           (f"{OPS}::test_vjp",),
           "sign error in log_softmax's gradient"),
    Mutant("softmax_vjp_sign", "symgrad/core/ops.py",
           "return [node * (g - sum(g * node, axis=axis, keepdims=True))]",
           "return [node * (g + sum(g * node, axis=axis, keepdims=True))]",
           (f"{OPS}::test_vjp",),
           "sign error in softmax's gradient"),
    Mutant("matmul_vjp_doubled", "symgrad/core/ops.py",
           "matmul(transpose(a), g) if wanted[1] else None]",
           "matmul(transpose(a), g * 2.0) if wanted[1] else None]",
           (f"{OPS}::test_vjp", CORE),
           "the gradient of a matrix product's right operand doubled"),
    Mutant("log_one_minus_sigmoid_sign", "symgrad/core/simplify.py",
           "return -scalar.softplus(rest.args[1].args[0])",
           "return -scalar.softplus(-rest.args[1].args[0])",
           (f"{SIMPLIFY}::test_body_rule_identity_is_proved_by_sympy",),
           "log(1 - sigmoid(a)) rewritten as log(sigmoid(a))"),
    Mutant("transpose_of_transpose_composed_backwards", "symgrad/core/simplify.py",
           'perm = tuple(inner.attrs["perm"][p] for p in node.attrs["perm"])',
           'perm = tuple(node.attrs["perm"][p] for p in inner.attrs["perm"])',
           (f"{CAUGHT}::test_two_transposes_compose_in_order",),
           "two transposes merged into the inverse composition"),
    Mutant("in_place_update_ignores_later_reads", "symgrad/compiler/codegen.py",
           "if last_read.get(variable, -1) > step_index[name]:",
           "if False:",
           (f"{CAUGHT}::test_updates_read_the_old_values_of_each_other",
            f"{CORE}::test_swapping_updates_read_old_values"),
           "an update written in place while a later step still reads the old value"),
    Mutant("lazy_unslice_input_freed_early", "symgrad/compiler/schedule.py",
           "return OPS[node.op].view or OPS[node.op].lazy_read",
           "return OPS[node.op].view",
           (f"{CORRECTNESS}::test_gradients_of_several_slices_keep_their_memory_until_read",),
           "a cotangent read lazily through an unslice handed its slot on before it is read"),
    # issue 18: GEMM epilogues
    Mutant("gemm_epilogue_ignores_later_reads", "symgrad/compiler/codegen.py",
           "if any(program.storage(i) is variable for later in program.steps[step_index[product]:]",
           "if False and any(program.storage(i) is variable for later in program.steps[step_index[product]:]",
           ("tests/compiler/test_gemm_epilogue.py",),
           "a product adds into W while a later step still reads W's old value"),
    Mutant("gemm_update_overwrites", "symgrad/runtime/kernels.py",
           "beta if start == 0 else 1.0)",
           "0.0 if start == 0 else 1.0)",
           ("tests/compiler/test_gemm_epilogue.py",),
           "the update's product replaces W instead of adding to it"),
    Mutant("inlined_inputs_freed_early", "symgrad/compiler/codegen.py",
           "program.last_use[arg] = max(program.last_use.get(arg, -1), last)",
           "pass",
           ("tests/compiler/test_inline_producer.py", "tests/test_fuzz.py"),
           "an inlined value's inputs handed their workspace on before its readers run"),
    Mutant("segment_covers_too_much", "symgrad/compiler/codegen.py",
           'covers = " and ".join(f"m{start[1:]} <= lo{d} and hi{d} <= m{stop[1:]}"',
           'covers = " and ".join(f"m{start[1:]} <= hi{d} and lo{d} <= m{stop[1:]}"',
           ("tests/compiler/test_segmented_loops.py", "tests/compiler/test_inline_producer.py"),
           "a segment that a window only touches reads the padded value as if inside"),
    Mutant("segments_not_split_at_bounds", "symgrad/compiler/codegen.py",
           "np.array([0, o.shape[{d}], \"\n                                        f\"{clipped}]), 0)",
           "np.array([0, o.shape[{d}], \"\n                                        f\"0]), 0)",
           ("tests/compiler/test_segmented_loops.py",),
           "the loop runs as one segment: each window read everywhere or nowhere"),
    Mutant("sum_of_products_overwrites", "symgrad/compiler/codegen.py",
           "0.0 if position == 0 else 1.0)",
           "0.0)",
           ("tests/compiler/test_gemm_epilogue.py",),
           "each product of a sum replaces the one before instead of adding to it"),
    Mutant("sum_of_products_slot_taken_late", "symgrad/compiler/codegen.py",
           "                       {**product_sums, **column_sums})",
           "                       column_sums)",
           ("tests/compiler/test_gemm_epilogue.py",),
           "a sum's memory, written from its first product on, given to a value computed in between"),
    Mutant("softmax_shift_of_another_column", "symgrad/runtime/kernels.py",
           "                w[i, k, j] = v[i, k, j] - m[i, j]",
           "                w[i, k, j] = v[i, k, j] - m[i, 0]",
           ("tests/core/test_ops.py",),
           "softmax along a middle axis shifted by another column's max"),
    Mutant("loop_sum_not_zeroed", "symgrad/compiler/codegen.py",
           '"    for i1 in range(r.size):", "        r[i1] = 0",',
           '"    for i1 in range(r.size):", "        pass",',
           ("tests/compiler/test_gemm_epilogue.py",),
           "a sum added up by its loop starts from whatever its memory held"),
    Mutant("loop_sum_reads_the_first_row", "symgrad/compiler/codegen.py",
           '"            r[i1] += o[i]"]', '"            r[i1] += o[i1]"]',
           ("tests/compiler/test_gemm_epilogue.py",),
           "a sum added up by its loop adds the first row again and again"),
    Mutant("loop_sum_in_a_loop_no_longer_flat", "symgrad/compiler/codegen.py",
           "a in taken for a in program.steps[step_index[value]].args)",
           "False for a in program.steps[step_index[value]].args)",
           ("tests/compiler/test_gemm_epilogue.py",),
           "a sum left to a loop that an inlined input made nested (the sum never computed)"),
    # issue 16: random draws, indexing, normalisation
    Mutant("philox_kernel_wrong_multiplier", "symgrad/runtime/kernels.py",
           "p1 = np.uint64(c2) * np.uint64(0xCD9E8D57)",
           "p1 = np.uint64(c2) * np.uint64(0xCD9E8D55)",
           ("tests/core/test_random.py::test_compiled_kernel_gives_the_known_answer",),
           "the compiled generator's second round multiplier off by two"),
    Mutant("random_counter_not_advanced", "symgrad/runtime/kernels.py",
           "out[1] = state[1] + 1", "out[1] = state[1]",
           ("tests/core/test_random.py",),
           "every call draws the same numbers"),
    Mutant("scatter_add_assigns", "symgrad/runtime/kernels.py",
           "out[i, row, j] += g[i, k, j]", "out[i, row, j] = g[i, k, j]",
           ("tests/test_layers_modes.py::test_embedding_gradient_adds_into_repeated_rows",),
           "a row taken twice keeps one cotangent, not their sum"),
    Mutant("index_check_allows_the_size", "symgrad/runtime/kernels.py",
           "if not 0 <= indices[k] < size:", "if not 0 <= indices[k] <= size:",
           ("tests/test_layers_modes.py::test_integer_labels_out_of_range_are_refused",),
           "an index equal to the size read past the array"),
    Mutant("batch_norm_running_mean_momentum_swapped", "symgrad/nn.py",
           "(r, (1.0 - m) * r + m * ops.reshape(batch, r.shape))",
           "(r, m * r + (1.0 - m) * ops.reshape(batch, r.shape))",
           ("tests/test_layers_modes.py::test_batch_norm_running_statistics_and_evaluation",),
           "running statistics weighted the wrong way"),
    Mutant("lanes_matmul_contraction_kept_per_example", "symgrad/core/ops.py",
           "_MATMUL_ROWS = {(0, None): 0, (None, 1): 1, (1, 0): SUMMED}",
           "_MATMUL_ROWS = {(0, None): 0, (None, 1): 1, (1, 0): 0}",
           ("tests/compiler/test_lanes.py",),
           "a weight gradient (a product over the examples) taken as a value per example"),
    Mutant("lanes_max_over_the_batch_splits", "symgrad/core/ops.py",
           "emit=_emit_reduce(\"max_axis\"), writes_output=True, rows=_rows_reduce(MIXED)",
           "emit=_emit_reduce(\"max_axis\"), writes_output=True, rows=_rows_reduce(SUMMED)",
           ("tests/compiler/test_lanes.py",),
           "a max over the batch taken as the sum of the lanes' maxima"),
    Mutant("lanes_sum_spread_back_allowed", "symgrad/compiler/lanes.py",
           "return AFTER if alone and spread is None and not _attrs_mention(node, batch) else MIXED",
           "return AFTER if alone else MIXED",
           ("tests/compiler/test_lanes.py",),
           "a batch statistic spread back over the examples computed after the lanes"),
    Mutant("lanes_shared_input_not_spread", "symgrad/core/ops.py",
           "elif spread is not None and spread >= lead and x.shape[spread - lead] != 1:",
           "elif False:",
           ("tests/compiler/test_lanes.py", "tests/test_fuzz.py::test_fuzz_lanes"),
           "an input of the batch's size but no examples split with the examples"),
    Mutant("lanes_mean_counts_the_lane", "symgrad/compiler/lanes.py",
           "if not node.inputs and spread is None and _attrs_mention(node, batch):",
           "if False:",
           ("tests/compiler/test_lanes.py",),
           "a mean over the batch divides by the lane's count, not the whole batch's"),
    Mutant("lanes_last_rows_dropped", "symgrad/compiler/function.py",
           "out.append(values[k][rows * lane // count:rows * (lane + 1) // count])",
           "out.append(values[k][rows * lane // count:rows * (lane + 1) // count - (lane == count - 1)])",
           ("tests/compiler/test_lanes.py",),
           "the last lane misses the batch's last example"),
    Mutant("lanes_one_lane_summed", "symgrad/compiler/function.py",
           "sums = [sum(r[j] for r in results[1:]) + results[0][j] for j in range(cut.sums)]",
           "sums = [results[0][j] for j in range(cut.sums)]",
           ("tests/compiler/test_lanes.py",),
           "only the first lane's sums reach the updates"),
    Mutant("lanes_native_failure_of_later_lane_ignored", "symgrad/compiler/function.py",
           "for (built, _), index in zip(bound, failed):",
           "for (built, _), index in zip(bound[:1], failed):",
           ("tests/compiler/test_lanes.py",),
           "a check failing in the second lane (started from native code) goes unreported"),
    Mutant("lanes_native_in_forked_child", "symgrad/runtime/native.py",
           "if _launched_in not in (None, os.getpid()) or not _thread_safe_layer():",
           "if not _thread_safe_layer():",
           ("tests/compiler/test_lanes.py",),
           "a process forked after the lanes' pool started launches it again (GNU OpenMP aborts)"),
]


# ------------------------------------------------------------------------------ running

def python_executable():
    venv = os.path.join(ROOT, ".venv", "bin", "python")
    return venv if os.path.exists(venv) else sys.executable


def copy_repository(source, destination):
    shutil.copytree(source, destination, symlinks=True, ignore=shutil.ignore_patterns(*COPY_IGNORE))


def seed_cache(cache):
    """The shared cache of compiled functions, seeded from the repository's (keys cover the
    generated source and the runtime modules, so seeding is only a speed-up)."""
    source = os.environ.get("SYMGRAD_CACHE_DIR") or os.path.join(ROOT, ".symgrad-cache")
    if os.path.isdir(source) and os.path.abspath(source) != os.path.abspath(cache):
        try:
            shutil.copytree(source, cache, ignore=shutil.ignore_patterns("*.tmp"), dirs_exist_ok=True)
        except shutil.Error:
            pass  # files changed while copying (tests running elsewhere): a cold entry or two
    os.makedirs(cache, exist_ok=True)


def environment(copy, cache):
    env = dict(os.environ)
    env["PYTHONPATH"] = copy + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["SYMGRAD_CACHE_DIR"] = cache
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_import(copy, env):
    out = subprocess.run([python_executable(), "-c", "import symgrad; print(symgrad.__file__)"],
                         cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    where = out.stdout.strip()
    if out.returncode != 0 or not os.path.realpath(where).startswith(os.path.realpath(copy) + os.sep):
        raise RuntimeError(f"symgrad imported from {where or '?'} instead of the copy {copy}:\n"
                           f"{out.stderr[-2000:]}")


def run_pytest(copy, env, targets):
    """(outcome, first failing test, seconds, output): outcome 'failed' (tests failed or the
    package did not import), 'passed', 'no tests' or 'error'."""
    command = [python_executable(), "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider",
               "-o", "addopts=", *targets]
    start = time.monotonic()
    try:
        out = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                             timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as timeout:
        return "timeout", "", time.monotonic() - start, str(timeout.stdout or "")[-4000:]
    seconds = time.monotonic() - start
    text = out.stdout + out.stderr
    first = ""
    match = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", text, re.M)
    if match:
        first = match.group(1)
    outcome = {0: "passed", 1: "failed", 2: "failed", 5: "no tests"}.get(out.returncode, "error")
    if outcome == "failed" and out.returncode == 2 and "not found" in text and not first:
        outcome = "error"  # a target that names no test
    return outcome, first, seconds, text[-6000:]


def run_mutant(mutant, snapshot, workdir, cache):
    copy = os.path.join(workdir, mutant.name, "repo")
    copy_repository(snapshot, copy)
    try:
        path = os.path.join(copy, mutant.path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        count = text.count(mutant.snippet)
        if count != 1:
            return dict(result=f"SNIPPET x{count}", caught_by="", seconds=0.0, output="")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(mutant.snippet, mutant.replacement))
        env = environment(copy, cache)
        check_import(copy, env)
        outcome, first, seconds, output = run_pytest(copy, env, list(mutant.targets))
        result = {"failed": "caught", "passed": "SURVIVED"}.get(outcome, outcome.upper())
        return dict(result=result, caught_by=first or ("(import/collection)" if result == "caught" else ""),
                    seconds=seconds, output=output)
    finally:
        shutil.rmtree(os.path.join(workdir, mutant.name), ignore_errors=True)


def baseline_targets(mutants):
    targets = []
    for m in mutants:
        for t in m.targets:
            if t not in targets:
                targets.append(t)
    whole = {t for t in targets if "::" not in t}
    return [t for t in targets if "::" not in t or t.split("::")[0] not in whole]


def check_snippets(mutants, root):
    problems = []
    for m in mutants:
        with open(os.path.join(root, m.path), encoding="utf-8") as f:
            count = f.read().count(m.snippet)
        if count != 1:
            problems.append(f"{m.name}: snippet occurs {count} times in {m.path}: {m.snippet!r}")
        for t in m.targets:
            if not os.path.exists(os.path.join(root, t.split("::")[0])):
                problems.append(f"{m.name}: target file {t.split('::')[0]} does not exist")
    return problems


def print_table(rows):
    headers = ("mutant", "file", "result", "caught by", "s")
    table = [headers] + [(m.name, m.path, r["result"], r["caught_by"], f"{r['seconds']:.0f}")
                         for m, r in rows]
    widths = [max(len(row[k]) for row in table) for k in range(len(headers))]
    for k, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--jobs", type=int, default=MAX_WORKERS, help="parallel runs (at most 2)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--verbose", action="store_true", help="show pytest's output for each mutant")
    args = parser.parse_args(argv)

    mutants = MUTANTS
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTANTS}
        if unknown:
            parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")
        mutants = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.name:45} {m.path:22} {m.note}")
        return 0

    problems = check_snippets(mutants, ROOT)
    if problems:
        print("mutation check: the code changed under these mutants (update them):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 2

    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="symgrad-mutants-")
    try:
        # One snapshot of the working tree: the baseline runs in it (which also fills its
        # Numba caches and the shared one), and every mutant is a copy of it, so all of them
        # see the same sources even while the tree is being edited.
        snapshot = os.path.join(workdir, "snapshot")
        copy_repository(ROOT, snapshot)
        problems = check_snippets(mutants, snapshot)
        if problems:
            print("mutation check: the code changed while it was copied:", *problems, sep="\n  ",
                  file=sys.stderr)
            return 2
        cache = os.path.join(workdir, "cache")
        seed_cache(cache)
        env = environment(snapshot, cache)
        check_import(snapshot, env)
        if not args.no_baseline:
            outcome, first, seconds, output = run_pytest(snapshot, env, baseline_targets(mutants))
            print(f"baseline (no mutation): {outcome} in {seconds:.0f}s", flush=True)
            if outcome != "passed":
                print(output, file=sys.stderr)
                print(f"mutation check: the unmutated targets do not pass ({first or outcome}); "
                      f"fix that first", file=sys.stderr)
                return 2

        results = {}
        jobs = max(1, min(args.jobs, MAX_WORKERS))
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(run_mutant, m, snapshot, workdir, cache): m for m in mutants}
            for future in concurrent.futures.as_completed(futures):
                m = futures[future]
                try:
                    r = future.result()
                except Exception as error:  # noqa: BLE001 - reported in the table
                    r = dict(result="ERROR", caught_by=str(error).splitlines()[0][:80],
                             seconds=0.0, output=str(error))
                results[m.name] = r
                print(f"  {m.name}: {r['result']} {r['caught_by']} ({r['seconds']:.0f}s)", flush=True)
                if args.verbose or r["result"] != "caught":
                    print(r["output"], flush=True)
        print()
        rows = [(m, results[m.name]) for m in mutants]
        print_table(rows)
        bad = [m.name for m, r in rows if r["result"] != "caught"]
        print(f"\n{len(rows) - len(bad)}/{len(rows)} mutants caught in {time.monotonic() - start:.0f}s")
        if bad:
            print(f"mutation check FAILED: not caught: {', '.join(bad)}", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

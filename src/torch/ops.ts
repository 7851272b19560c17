// The operator manifest: every aten operator the project uses, resolved once in libtorch's
// dispatcher at load. A libtorch that lacks one fails here, loudly and listing all that are
// missing, instead of at the first call deep inside a training step.
//
// Keys are "name.overload" as in native_functions.yaml (the overload may be empty: "neg").
import { native } from './native.js';

const MANIFEST = [
  // creation
  'zeros', 'ones', 'full', 'empty.memory_format', 'arange.start_step', 'linspace', 'rand.generator', 'randn.generator',
  'randint.low_generator', 'zeros_like', 'ones_like', 'full_like', 'empty_like', 'rand_like', 'randn_like',
  'randint_like.low_dtype', 'eye', 'tril', 'triu', 'bernoulli.p',
  // conversion and copies
  'to.dtype_layout', 'clone', 'detach', 'contiguous', 'copy_', 'zero_', 'fill_.Scalar', 'normal_', 'uniform_',
  'is_contiguous.memory_format', 'requires_grad_', 'set_data', 'pin_memory', 'is_pinned',
  // views and joins
  'reshape', 'view', 'permute', 'transpose.int', 'flatten.using_ints', 'unflatten.int', 'squeeze', 'squeeze.dim',
  'unsqueeze', 'expand', 'expand_as', 'repeat', 'repeat_interleave.self_int', 'chunk', 'split.Tensor',
  'split_with_sizes', 'narrow', 'cat', 'stack', 'index_select', 'gather', 'flip', 'select.int', 'slice.Tensor',
  'as_strided', 'index.Tensor', 'masked_fill.Scalar', 'masked_fill_.Scalar', 'roll', 't', 'unbind.int', 'tile',
  // elementwise
  'add.Tensor', 'add.Scalar', 'sub.Tensor', 'sub.Scalar', 'rsub.Scalar', 'mul.Tensor', 'mul.Scalar', 'div.Tensor',
  'div.Scalar', 'div.Tensor_mode', 'remainder.Scalar', 'remainder.Tensor', 'pow.Tensor_Scalar', 'pow.Tensor_Tensor',
  'pow.Scalar', 'neg', 'abs', 'sqrt', 'rsqrt', 'exp', 'log', 'log1p', 'expm1', 'sin', 'cos', 'tanh', 'erf', 'sigmoid',
  'reciprocal', 'square', 'floor', 'ceil', 'round', 'sign', 'clamp', 'clamp.Tensor', 'clamp_min', 'clamp_max',
  'where.self', 'where.ScalarOther', 'where.ScalarSelf', 'eq.Tensor', 'eq.Scalar', 'ne.Tensor', 'ne.Scalar',
  'lt.Tensor', 'lt.Scalar', 'le.Tensor', 'le.Scalar', 'gt.Tensor', 'gt.Scalar', 'ge.Tensor', 'ge.Scalar',
  'logical_not', 'logical_and', 'logical_or', 'minimum', 'maximum', 'lerp.Scalar', 'lerp.Tensor', 'addcmul', 'addcdiv',
  'isnan', 'isinf', 'isfinite', 'nan_to_num',
  // in place
  'add_.Tensor', 'add_.Scalar', 'sub_.Tensor', 'sub_.Scalar', 'mul_.Tensor', 'mul_.Scalar', 'div_.Tensor', 'div_.Scalar',
  'addcmul_', 'addcdiv_', 'lerp_.Scalar', 'lerp_.Tensor', 'clamp_', 'clamp_min_', 'clamp_max_', 'sqrt_', 'neg_',
  'exp_', 'pow_.Scalar', 'sigmoid_', 'rsqrt_',
  // reductions
  'sum', 'sum.dim_IntList', 'mean', 'mean.dim', 'var.correction', 'std.correction', 'max', 'max.dim', 'min', 'min.dim',
  'amax', 'amin', 'argmax', 'argmin', 'linalg_vector_norm', 'prod', 'cumsum', 'cumprod', 'all', 'any', 'logsumexp', 'topk',
  'sort', 'argsort',
  // linear algebra
  'matmul', 'mm', 'bmm', 'baddbmm', 'einsum', 'outer',
  // neural network functions
  'linear', 'conv2d', 'conv2d.padding', 'group_norm', 'layer_norm', 'embedding', 'dropout', 'upsample_nearest2d.vec',
  'upsample_bilinear2d.vec', '_upsample_bilinear2d_aa.vec', 'upsample_bicubic2d.vec', '_upsample_bicubic2d_aa.vec',
  'avg_pool2d', 'max_pool2d', 'pad', 'silu', 'gelu', 'relu', 'leaky_relu', 'softmax.int', 'log_softmax.int',
  'log_sigmoid', 'softplus', 'mse_loss', 'l1_loss', 'smooth_l1_loss', 'binary_cross_entropy_with_logits',
  'cross_entropy_loss', 'scaled_dot_product_attention', 'cosine_similarity', 'pixel_shuffle', 'adaptive_avg_pool2d',
  // optimizer and amp kernels
  '_foreach_mul_.Scalar', '_foreach_mul_.Tensor', '_foreach_add_.List', '_foreach_add_.Scalar', '_foreach_lerp_.Scalar',
  '_foreach_addcmul_.Scalar', '_foreach_addcdiv_.Scalar', '_foreach_addcdiv_.ScalarList', '_foreach_sqrt',
  '_foreach_div_.Scalar', '_foreach_div_.ScalarList', '_foreach_add_.ScalarList', '_foreach_norm.Scalar', '_foreach_zero_', '_fused_adamw_',
  '_amp_foreach_non_finite_check_and_unscale_', '_amp_update_scale_',
] as const;

export type OpKey = (typeof MANIFEST)[number];

function resolveAll(): Record<OpKey, number> {
  const ids = {} as Record<OpKey, number>;
  const missing: string[] = [];
  for (const key of MANIFEST) {
    const dot = key.indexOf('.');
    const name = `aten::${dot < 0 ? key : key.slice(0, dot)}`;
    const overload = dot < 0 ? '' : key.slice(dot + 1);
    try {
      ids[key] = native.opHandle(name, overload);
    } catch {
      missing.push(key);
    }
  }
  if (missing.length) {
    throw new Error(`this libtorch (${native.buildInfo().torchVersion}) lacks operators the project needs: ` +
      `${missing.join(', ')}. diffusion-dpo needs libtorch 2.x.`);
  }
  return ids;
}

/** Operator ids by manifest key. */
export const OP: Readonly<Record<OpKey, number>> = resolveAll();

export const MANIFEST_KEYS: readonly OpKey[] = MANIFEST;

/** The operator's schema as libtorch states it (for messages and the manifest test). */
export function opSchema(key: OpKey): string {
  return native.opSchema(OP[key]);
}

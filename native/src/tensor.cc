// What is not an operator: creating tensors from host memory and reading them back, metadata,
// dispose and the live-handle counters.
#include <cstring>

#include "common.h"

namespace dpo {
namespace {

// fromBuffer(data: TypedArray | ArrayBuffer | Buffer, dtype: code, shape: number[]) -> handle.
// Always copies: the tensor must never point into JS memory (its deleter could run on any thread).
napi_value from_buffer(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  void* data = nullptr;
  size_t byte_length = 0;
  bool is_typed = false, is_ab = false;
  napi_is_typedarray(env, a.argv[0], &is_typed);
  napi_is_arraybuffer(env, a.argv[0], &is_ab);
  if (is_typed) {
    napi_typedarray_type type;
    size_t length, offset;
    napi_value ab;
    check(env, napi_get_typedarray_info(env, a.argv[0], &type, &length, &data, &ab, &offset), "data");
    size_t elem = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: elem = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
      default: elem = 1;
    }
    byte_length = length * elem;
  } else if (is_ab) {
    check(env, napi_get_arraybuffer_info(env, a.argv[0], &data, &byte_length), "data");
  } else {
    throw ArgError("fromBuffer: expected a TypedArray, Buffer or ArrayBuffer");
  }
  const auto dtype = static_cast<at::ScalarType>(get_int(env, a.argv[1], "dtype"));
  const auto shape = get_int_list(env, a.argv[2], "shape");
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  if (t.nbytes() != byte_length)
    throw ArgError("fromBuffer: " + std::to_string(byte_length) + " bytes given but shape " + c10::str(t.sizes()) +
                   " of " + c10::toString(dtype) + " needs " + std::to_string(t.nbytes()));
  if (byte_length) std::memcpy(t.data_ptr(), data, byte_length);
  return make_tensor(env, std::move(t));
  DPO_CATCH(env)
}

// toBuffer(h) -> ArrayBuffer holding the tensor's elements, row-major (copied off the device).
napi_value to_buffer(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  at::Tensor t = get_tensor(get_double(env, a.argv[0], "tensor"));
  if (t.is_conj()) t = t.resolve_conj();
  at::Tensor host = t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
  void* out;
  napi_value ab;
  check(env, napi_create_arraybuffer(env, host.nbytes(), &out, &ab), "arraybuffer");
  if (host.nbytes()) std::memcpy(out, host.data_ptr(), host.nbytes());
  return ab;
  DPO_CATCH(env)
}

// item(h) -> number | boolean. Integers beyond 2^53 come back as bigint.
napi_value item(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const at::Tensor& t = get_tensor(get_double(env, a.argv[0], "tensor"));
  c10::Scalar s = t.item();
  if (s.isBoolean()) return make_bool(env, s.toBool());
  if (s.isIntegral(false)) {
    const int64_t i = s.toLong();
    if (i > 9007199254740991LL || i < -9007199254740991LL) {
      napi_value big;
      napi_create_bigint_int64(env, i, &big);
      return big;
    }
    return make_double(env, static_cast<double>(i));
  }
  return make_double(env, s.toDouble());
  DPO_CATCH(env)
}

// meta(h) -> [dtypeCode, device, requiresGrad, ...shape]: one call for everything the JS side caches.
napi_value meta(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const at::Tensor& t = get_tensor(get_double(env, a.argv[0], "tensor"));
  const auto sizes = t.sizes();
  napi_value arr = make_array(env, 3 + sizes.size());
  set_element(env, arr, 0, make_int(env, static_cast<int64_t>(t.scalar_type())));
  set_element(env, arr, 1, make_string(env, device_string(t.device())));
  set_element(env, arr, 2, make_bool(env, t.requires_grad()));
  for (size_t i = 0; i < sizes.size(); ++i) set_element(env, arr, 3 + i, make_int(env, sizes[i]));
  return arr;
  DPO_CATCH(env)
}

napi_value strides(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const at::Tensor& t = get_tensor(get_double(env, a.argv[0], "tensor"));
  const auto st = t.strides();
  napi_value arr = make_array(env, st.size());
  for (size_t i = 0; i < st.size(); ++i) set_element(env, arr, i, make_int(env, st[i]));
  return arr;
  DPO_CATCH(env)
}

// sameStorage(a, b): whether two handles share memory (views, in-place results).
napi_value same_storage(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const at::Tensor& x = get_tensor(get_double(env, a.argv[0], "a"));
  const at::Tensor& y = get_tensor(get_double(env, a.argv[1], "b"));
  return make_bool(env, x.has_storage() && y.has_storage() && x.storage().is_alias_of(y.storage()));
  DPO_CATCH(env)
}

// share(h) -> a second handle to the very same tensor (same TensorImpl: same data, .grad and
// autograd identity). What a holder needs that must outlive the scopes of the code that made the
// tensor, such as a gradient-checkpoint tape; disposing either handle leaves the other valid.
napi_value share(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  return make_tensor(env, get_tensor(get_double(env, a.argv[0], "tensor")));
  DPO_CATCH(env)
}

// dispose(h) -> whether the handle was live. Idempotent; stale handles are ignored.
napi_value dispose(napi_env env, napi_callback_info info) {
  DPO_TRY
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  double h;
  if (argc < 1 || napi_get_value_double(env, argv[0], &h) != napi_ok) throw ArgError("dispose: expected a handle");
  return make_bool(env, release_tensor(env, h));
  DPO_CATCH(env)
}

// disposeMany(handles: Float64Array) -> how many were live. Scopes end with one call, not one per tensor.
napi_value dispose_many(napi_env env, napi_callback_info info) {
  DPO_TRY
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  napi_typedarray_type type;
  size_t length;
  void* data;
  if (argc < 1 || napi_get_typedarray_info(env, argv[0], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array)
    throw ArgError("disposeMany: expected a Float64Array of handles");
  const double* handles = static_cast<const double*>(data);
  int64_t freed = 0;
  for (size_t i = 0; i < length; ++i) freed += release_tensor(env, handles[i]) ? 1 : 0;
  return make_int(env, freed);
  DPO_CATCH(env)
}

napi_value live_tensors(napi_env env, napi_callback_info info) {
  DPO_TRY
  napi_value o = make_object(env);
  set_named(env, o, "live", make_int(env, live_tensor_count()));
  set_named(env, o, "peak", make_int(env, peak_tensor_count()));
  return o;
  DPO_CATCH(env)
}

// scalarTypeCodes() -> {float32: 6, ...}: the TS dtype table is checked against it at load.
napi_value scalar_type_codes(napi_env env, napi_callback_info info) {
  DPO_TRY
  napi_value o = make_object(env);
  const std::pair<const char*, at::ScalarType> table[] = {
      {"uint8", at::kByte},   {"int8", at::kChar},       {"int16", at::kShort}, {"int32", at::kInt},
      {"int64", at::kLong},   {"float16", at::kHalf},    {"float32", at::kFloat}, {"float64", at::kDouble},
      {"bool", at::kBool},    {"bfloat16", at::kBFloat16}};
  for (const auto& [name, type] : table) set_named(env, o, name, make_int(env, static_cast<int64_t>(type)));
  return o;
  DPO_CATCH(env)
}

}  // namespace

void exports_tensor(std::vector<Export>& out) {
  out.push_back({"fromBuffer", from_buffer});
  out.push_back({"toBuffer", to_buffer});
  out.push_back({"item", item});
  out.push_back({"meta", meta});
  out.push_back({"strides", strides});
  out.push_back({"sameStorage", same_storage});
  out.push_back({"share", share});
  out.push_back({"dispose", dispose});
  out.push_back({"disposeMany", dispose_many});
  out.push_back({"liveTensors", live_tensors});
  out.push_back({"scalarTypeCodes", scalar_type_codes});
}

}  // namespace dpo

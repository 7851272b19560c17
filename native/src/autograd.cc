// Autograd and the thread-local modes: grad mode, inference mode and autocast. The JS side wraps
// each mode as a closure (torch.noGrad(fn), torch.autocast(...)(fn)) that restores the previous
// state in `finally`; all ops run on the JS thread, so thread-local state is what we want.
#include <ATen/autocast_mode.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <memory>

#include "common.h"

namespace dpo {
namespace {

std::vector<at::Tensor> tensor_list(napi_env env, napi_value v, const char* what) {
  bool is_array = false;
  napi_is_array(env, v, &is_array);
  if (!is_array) throw ArgError(std::string(what) + ": expected an array of tensors");
  uint32_t n;
  napi_get_array_length(env, v, &n);
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < n; ++i) {
    napi_value e;
    napi_get_element(env, v, i, &e);
    out.push_back(is_nullish(env, e) ? at::Tensor() : get_tensor(get_double(env, e, what)));
  }
  return out;
}

// backward(tensors[], grads[] (null entries: implicit ones), retainGraph, createGraph)
napi_value backward(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto tensors = tensor_list(env, a.argv[0], "tensors");
  auto grads = is_nullish(env, a.argv[1]) ? std::vector<at::Tensor>(tensors.size()) : tensor_list(env, a.argv[1], "grads");
  if (grads.size() != tensors.size()) throw ArgError("backward: tensors and grads differ in length");
  const bool create_graph = !is_nullish(env, a.argv[3]) && get_bool(env, a.argv[3], "createGraph");
  c10::optional<bool> retain;
  if (!is_nullish(env, a.argv[2])) retain = get_bool(env, a.argv[2], "retainGraph");
  torch::autograd::backward(tensors, grads, retain, create_graph);
  return make_undefined(env);
  DPO_CATCH(env)
}

// grad(outputs[], inputs[], gradOutputs[]|null, retainGraph, createGraph, allowUnused) -> (handle|null)[]
napi_value autograd_grad(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto outputs = tensor_list(env, a.argv[0], "outputs");
  auto inputs = tensor_list(env, a.argv[1], "inputs");
  auto grad_outputs =
      is_nullish(env, a.argv[2]) ? std::vector<at::Tensor>(outputs.size()) : tensor_list(env, a.argv[2], "gradOutputs");
  c10::optional<bool> retain;
  if (!is_nullish(env, a.argv[3])) retain = get_bool(env, a.argv[3], "retainGraph");
  const bool create_graph = !is_nullish(env, a.argv[4]) && get_bool(env, a.argv[4], "createGraph");
  const bool allow_unused = !is_nullish(env, a.argv[5]) && get_bool(env, a.argv[5], "allowUnused");
  auto grads = torch::autograd::grad(outputs, inputs, grad_outputs, retain, create_graph, allow_unused);
  napi_value arr = make_array(env, grads.size());
  for (size_t i = 0; i < grads.size(); ++i) set_element(env, arr, i, make_tensor(env, std::move(grads[i])));
  return arr;
  DPO_CATCH(env)
}

// getGrad(h) -> handle | null (a fresh alias: disposing it does not free the gradient)
napi_value get_grad(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const at::Tensor& t = get_tensor(get_double(env, a.argv[0], "tensor"));
  return make_tensor(env, t.grad());
  DPO_CATCH(env)
}

// setGrad(h, gradHandle | null)
napi_value set_grad(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const at::Tensor& t = get_tensor(get_double(env, a.argv[0], "tensor"));
  if (is_nullish(env, a.argv[1])) {
    t.mutable_grad().reset();
  } else {
    const at::Tensor& g = get_tensor(get_double(env, a.argv[1], "grad"));
    TORCH_CHECK(g.sizes() == t.sizes(), "assigned grad has shape ", g.sizes(), " but the tensor has shape ", t.sizes());
    TORCH_CHECK(g.scalar_type() == t.scalar_type() && g.device() == t.device(),
                "assigned grad has dtype/device ", g.scalar_type(), "/", g.device(), " but the tensor has ",
                t.scalar_type(), "/", t.device());
    t.mutable_grad() = g;
  }
  return make_undefined(env);
  DPO_CATCH(env)
}

napi_value set_requires_grad(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const at::Tensor& t = get_tensor(get_double(env, a.argv[0], "tensor"));
  t.requires_grad_(get_bool(env, a.argv[1], "requiresGrad"));
  return make_undefined(env);
  DPO_CATCH(env)
}

// autogradInfo(h) -> [isLeaf, gradFnName | null]
napi_value autograd_info(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const at::Tensor& t = get_tensor(get_double(env, a.argv[0], "tensor"));
  napi_value arr = make_array(env, 2);
  set_element(env, arr, 0, make_bool(env, t.is_leaf()));
  const auto& fn = t.grad_fn();
  set_element(env, arr, 1, fn ? make_string(env, fn->name()) : make_null(env));
  return arr;
  DPO_CATCH(env)
}

napi_value retain_grad(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  get_tensor(get_double(env, a.argv[0], "tensor")).retain_grad();
  return make_undefined(env);
  DPO_CATCH(env)
}

// setGradEnabled(b) -> previous
napi_value set_grad_enabled(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const bool prev = at::GradMode::is_enabled();
  if (!is_nullish(env, a.argv[0])) at::GradMode::set_enabled(get_bool(env, a.argv[0], "enabled"));
  return make_bool(env, prev);
  DPO_CATCH(env)
}

// Inference mode is an RAII guard in libtorch; the JS closure keeps enter/exit strictly nested.
std::vector<std::unique_ptr<c10::InferenceMode>> g_inference_guards;

napi_value inference_mode_enter(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const bool enabled = is_nullish(env, a.argv[0]) || get_bool(env, a.argv[0], "enabled");
  g_inference_guards.push_back(std::make_unique<c10::InferenceMode>(enabled));
  return make_int(env, static_cast<int64_t>(g_inference_guards.size()));
  DPO_CATCH(env)
}

napi_value inference_mode_exit(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const int64_t depth = get_int(env, a.argv[0], "depth");
  if (depth != static_cast<int64_t>(g_inference_guards.size()))
    throw std::runtime_error("inference mode guards exited out of order");
  g_inference_guards.pop_back();
  return make_undefined(env);
  DPO_CATCH(env)
}

napi_value is_inference_mode(napi_env env, napi_callback_info info) {
  DPO_TRY
  return make_bool(env, c10::InferenceMode::is_enabled());
  DPO_CATCH(env)
}

// autocastEnter(deviceType: "cpu"|"cuda", dtype code, enabled) -> [prevEnabled, prevDtype]
// Mirrors torch.autocast.__enter__: save, set, increment the nesting count.
napi_value autocast_enter(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const auto device = parse_device(get_string(env, a.argv[0], "device")).type();
  const auto dtype = static_cast<at::ScalarType>(get_int(env, a.argv[1], "dtype"));
  const bool enabled = get_bool(env, a.argv[2], "enabled");
  TORCH_CHECK(at::autocast::is_autocast_available(device), "autocast is not available for device ", device);
  const bool prev_enabled = at::autocast::is_autocast_enabled(device);
  const auto prev_dtype = at::autocast::get_autocast_dtype(device);
  at::autocast::set_autocast_enabled(device, enabled);
  at::autocast::set_autocast_dtype(device, dtype);
  at::autocast::increment_nesting();
  napi_value arr = make_array(env, 2);
  set_element(env, arr, 0, make_bool(env, prev_enabled));
  set_element(env, arr, 1, make_int(env, static_cast<int64_t>(prev_dtype)));
  return arr;
  DPO_CATCH(env)
}

// autocastExit(deviceType, prevEnabled, prevDtype): on the outermost exit the cast cache (fp16
// copies of weights) is cleared, as torch.autocast.__exit__ does.
napi_value autocast_exit(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const auto device = parse_device(get_string(env, a.argv[0], "device")).type();
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device, get_bool(env, a.argv[1], "prevEnabled"));
  at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(get_int(env, a.argv[2], "prevDtype")));
  return make_undefined(env);
  DPO_CATCH(env)
}

napi_value autocast_state(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const auto device = parse_device(get_string(env, a.argv[0], "device")).type();
  napi_value arr = make_array(env, 2);
  set_element(env, arr, 0, make_bool(env, at::autocast::is_autocast_enabled(device)));
  set_element(env, arr, 1, make_int(env, static_cast<int64_t>(at::autocast::get_autocast_dtype(device))));
  return arr;
  DPO_CATCH(env)
}

// autocastCacheEnabled(enabled?) -> previous. Autocast caches the low-precision copies of fp32
// leaf weights for the rest of the outermost autocast region; a copy made under no-grad has no
// autograd history, so a grad-mode use of the same weight later in the region would find a cast
// that does not lead back to the weight. Code that runs weights under no-grad inside autocast and
// must not poison the cache (checkpointed segments) turns caching off around that call.
napi_value autocast_cache_enabled(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const bool prev = at::autocast::is_autocast_cache_enabled();
  if (!is_nullish(env, a.argv[0])) at::autocast::set_autocast_cache_enabled(get_bool(env, a.argv[0], "enabled"));
  return make_bool(env, prev);
  DPO_CATCH(env)
}

}  // namespace

void exports_autograd(std::vector<Export>& out) {
  out.push_back({"backward", backward});
  out.push_back({"autogradGrad", autograd_grad});
  out.push_back({"getGrad", get_grad});
  out.push_back({"setGrad", set_grad});
  out.push_back({"setRequiresGrad", set_requires_grad});
  out.push_back({"autogradInfo", autograd_info});
  out.push_back({"retainGrad", retain_grad});
  out.push_back({"setGradEnabled", set_grad_enabled});
  out.push_back({"inferenceModeEnter", inference_mode_enter});
  out.push_back({"inferenceModeExit", inference_mode_exit});
  out.push_back({"isInferenceMode", is_inference_mode});
  out.push_back({"autocastEnter", autocast_enter});
  out.push_back({"autocastExit", autocast_exit});
  out.push_back({"autocastState", autocast_state});
  out.push_back({"autocastCacheEnabled", autocast_cache_enabled});
}

}  // namespace dpo

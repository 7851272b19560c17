// Shared declarations of the addon: the tensor handle table, the error boundary and small
// Node-API helpers. Raw Node-API (not node-addon-api) is used throughout because the op path
// is hot: one small op costs about a microsecond and every N-API call counts.
#pragma once

#include <ATen/ATen.h>
#include <node_api.h>
#include <torch/version.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#define DPO_STR2(x) #x
#define DPO_STR(x) DPO_STR2(x)
#define DPO_TORCH_VERSION \
  DPO_STR(TORCH_VERSION_MAJOR) "." DPO_STR(TORCH_VERSION_MINOR) "." DPO_STR(TORCH_VERSION_PATCH)

namespace dpo {

// ---------------------------------------------------------------------------------------------
// Tensor handles. A JS tensor holds a plain number; the at::Tensor lives in a native slot table.
// A handle is slot + generation * 2^24 (a double, exact below 2^53): a stale handle, such as a
// GC finalizer firing for a tensor that was disposed long ago, finds another generation in its
// slot and is ignored, so no dispose/finalizer ordering can free a live tensor.
// ---------------------------------------------------------------------------------------------
double put_tensor(napi_env env, at::Tensor t);
const at::Tensor& get_tensor(double handle);  // throws HandleError for disposed/unknown handles
bool release_tensor(napi_env env, double handle);
int64_t live_tensor_count();
int64_t peak_tensor_count();

struct HandleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Bad argument from JS (wrong kind of value): becomes a JS TypeError.
struct ArgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// Error boundary: every exported function body runs inside DPO_TRY / DPO_CATCH so that no C++
// exception crosses into V8 (which would abort the process).
// ---------------------------------------------------------------------------------------------
void throw_current_exception(napi_env env);  // call only inside a catch(...) block

#define DPO_TRY try {
#define DPO_CATCH(env)               \
  }                                  \
  catch (...) {                      \
    ::dpo::throw_current_exception(env); \
    return nullptr;                  \
  }

// ---------------------------------------------------------------------------------------------
// Node-API helpers (throw ArgError on misuse; the boundary turns it into a TypeError).
// ---------------------------------------------------------------------------------------------
void check(napi_env env, napi_status status, const char* what);
// Arguments of a call; argv[i] for i >= argc is JS undefined.
struct Args {
  static constexpr size_t kMax = 32;
  size_t argc = 0;
  napi_value argv[kMax];
  Args(napi_env env, napi_callback_info info);
};
napi_valuetype type_of(napi_env env, napi_value v);
bool is_nullish(napi_env env, napi_value v);
double get_double(napi_env env, napi_value v, const char* what);
int64_t get_int(napi_env env, napi_value v, const char* what);
bool get_bool(napi_env env, napi_value v, const char* what);
std::string get_string(napi_env env, napi_value v, const char* what);
std::vector<int64_t> get_int_list(napi_env env, napi_value v, const char* what);
napi_value make_double(napi_env env, double d);
napi_value make_int(napi_env env, int64_t i);
napi_value make_bool(napi_env env, bool b);
napi_value make_string(napi_env env, const std::string& s);
napi_value make_undefined(napi_env env);
napi_value make_null(napi_env env);
napi_value make_array(napi_env env, size_t n);
void set_element(napi_env env, napi_value arr, uint32_t i, napi_value v);
void set_named(napi_env env, napi_value obj, const char* name, napi_value v);
napi_value make_object(napi_env env);
napi_value make_tensor(napi_env env, at::Tensor t);  // put + number; null for an undefined tensor

// Device strings: "cpu", "cuda", "cuda:1".
c10::Device parse_device(const std::string& s);
std::string device_string(const c10::Device& d);

// Generators cross as type-tagged externals (few and long-lived, so a finalizer is fine).
at::Generator get_generator(napi_env env, napi_value v);
napi_value wrap_generator(napi_env env, at::Generator g);

// Runs `run` on a libuv thread and settles the returned promise on the JS thread with `result`'s
// value, or rejects it with the message of what `run` threw (async.cc).
napi_value run_async(napi_env env, const char* name, std::function<void()> run, std::function<napi_value(napi_env)> result);

// Registration: each source file contributes its exports.
using Export = std::pair<const char*, napi_callback>;
void exports_tensor(std::vector<Export>& out);
void exports_dispatch(std::vector<Export>& out);
void exports_autograd(std::vector<Export>& out);
void exports_runtime(std::vector<Export>& out);
void exports_io(std::vector<Export>& out);
void exports_image(std::vector<Export>& out);
void exports_dist(std::vector<Export>& out);

}  // namespace dpo

// Blocking work on a libuv thread, settled as a promise on the JS thread: how the addon waits for
// a device or a collective without stopping the event loop (signals, data loading).
#include "common.h"

#include <c10/util/Exception.h>

namespace dpo {
namespace {

struct AsyncJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  std::function<void()> run;                  // libuv thread
  std::function<napi_value(napi_env)> result;  // JS thread, after run succeeded
  std::string error;
};

}  // namespace

napi_value run_async(napi_env env, const char* name, std::function<void()> run, std::function<napi_value(napi_env)> result) {
  auto* job = new AsyncJob{nullptr, nullptr, std::move(run), std::move(result), {}};
  napi_value promise;
  check(env, napi_create_promise(env, &job->deferred, &promise), "promise");
  check(env, napi_create_async_work(env, nullptr, make_string(env, name),
      [](napi_env, void* data) {
        auto* job = static_cast<AsyncJob*>(data);
        try {
          job->run();
        } catch (const c10::Error& e) {
          job->error = e.what_without_backtrace();
        } catch (const std::exception& e) {
          job->error = e.what();
        } catch (...) {
          job->error = "unknown C++ exception";
        }
      },
      [](napi_env env, napi_status, void* data) {
        auto* job = static_cast<AsyncJob*>(data);
        napi_value value = nullptr;
        if (job->error.empty()) {
          try {
            value = job->result(env);
          } catch (const std::exception& e) {
            job->error = e.what();
          }
        }
        if (job->error.empty()) {
          napi_resolve_deferred(env, job->deferred, value);
        } else {
          napi_value msg, err;
          napi_create_string_utf8(env, job->error.c_str(), job->error.size(), &msg);
          napi_create_error(env, nullptr, msg, &err);
          napi_reject_deferred(env, job->deferred, err);
        }
        napi_delete_async_work(env, job->work);
        delete job;
      },
      job, &job->work), "async work");
  check(env, napi_queue_async_work(env, job->work), "queue async work");
  return promise;
}


}  // namespace dpo

// Gradient averaging overlapped with backward, as DDP's Reducer does it: a post-hook on each
// parameter's gradient accumulator notes when its gradient is final; when every gradient of a
// bucket is, the bucket is flattened and its all-reduce started, while backward goes on with the
// layers before. Buckets start strictly in order (every rank must issue the same collectives in
// the same order, whatever order its autograd threads finish in). The hooks are C++: they run on
// libtorch's backward threads, where no JavaScript may run.
//
// JS drives it per update: distReducerArm before the update's last backward (the accumulation
// micro-steps before it only accumulate, as DDP's no_sync), then distReducerFinish after it, which
// starts the buckets not started yet (parameters that got no gradient contribute zeros), waits for
// all of them off the JS thread and writes the averages into the gradients. Without an arm,
// finish reduces everything after backward.
#include "common.h"
#include "dist.h"

#ifdef DPO_WITH_GLOO
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/node.h>
#include <torch/csrc/autograd/variable.h>

#include <mutex>
#include <utility>

namespace dpo {
namespace {

constexpr napi_type_tag kReducerTag = {0x6470'6f5f'7265'6475ULL, 0x6365'7231'0000'0004ULL};

using GradAccumulator = decltype(torch::autograd::impl::grad_accumulator(std::declval<const torch::autograd::Variable&>()));

class Reducer : public std::enable_shared_from_this<Reducer> {
 public:
  Reducer(c10::intrusive_ptr<c10d::Backend> backend, std::vector<at::Tensor> params, std::vector<std::vector<size_t>> buckets, double divisor)
      : backend_(std::move(backend)), params_(std::move(params)), divisor_(divisor), seen_(params_.size(), false) {
    set_buckets(std::move(buckets));
  }

  // Replaces the buckets (between updates), e.g. by the order gradients became ready (DDP's rebuild_buckets).
  void rebucket(std::vector<std::vector<size_t>> buckets) {
    std::lock_guard<std::mutex> lock(mu_);
    if (armed_ || !works_.empty()) throw std::runtime_error("distReducerRebucket: a reduction is in progress");
    set_buckets(std::move(buckets));
    flats_.clear();
  }

  // Parameter indices in the order their gradients first became final (every backward records, until all were seen).
  std::vector<size_t> ready_order() {
    std::lock_guard<std::mutex> lock(mu_);
    return order_;
  }

  // Registers the hooks; the accumulators are kept so that they (and their hooks) live as long as we do.
  void attach() {
    std::weak_ptr<Reducer> self = weak_from_this();
    for (size_t i = 0; i < params_.size(); i++) {
      auto acc = torch::autograd::impl::grad_accumulator(params_[i]);
      if (!acc) throw std::runtime_error("parameter " + std::to_string(i) + " has no gradient accumulator (does it require grad?)");
      acc->add_post_hook(std::make_unique<ReadyHook>(self, i));
      accumulators_.push_back(std::move(acc));
    }
  }

  size_t param_count() const { return params_.size(); }

  void arm() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!works_.empty()) throw std::runtime_error("distReducerArm: the previous update's reduction was not finished");
    armed_ = true;
    pending_.assign(buckets_.size(), 0);
    for (size_t b = 0; b < buckets_.size(); b++) pending_[b] = static_cast<int>(buckets_[b].size());
    ready_.assign(params_.size(), false);
    next_ = 0;
    error_.clear();
  }

  // A parameter's gradient is final for this backward (on a backward thread).
  void ready(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!seen_[i]) {
      seen_[i] = true;
      order_.push_back(i);
    }
    if (!armed_) return;
    if (ready_[i]) {
      error_ = "the gradient of parameter " + std::to_string(i) + " was accumulated twice in one backward";
      return;
    }
    ready_[i] = true;
    pending_[bucket_of_[i]]--;
    try {
      while (next_ < buckets_.size() && pending_[next_] == 0) launch(next_++);
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }

  // After backward, on the JS thread: the buckets not started yet; then the works to wait for.
  std::vector<c10::intrusive_ptr<c10d::Work>> start_rest(size_t* started_early) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.empty()) {
      // the reduction is lost (a bucket may have started with part of its gradients): drop it, say why
      const std::string error = error_;
      armed_ = false;
      error_.clear();
      works_.clear();
      throw std::runtime_error(error);
    }
    *started_early = armed_ ? next_ : 0;
    if (!armed_) next_ = 0;
    armed_ = false;
    while (next_ < buckets_.size()) launch(next_++);
    return works_;
  }

  // After the waits, on the JS thread: average and write back into the gradients.
  void write_back() {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t b = 0; b < buckets_.size(); b++) {
      auto avg = flats_.at(b).div_(divisor_);
      int64_t offset = 0;
      for (size_t i : buckets_[b]) {
        auto& p = params_[i];
        auto slice = avg.narrow(0, offset, p.numel()).view(p.sizes());
        if (p.grad().defined()) p.mutable_grad().copy_(slice);
        else p.mutable_grad() = slice.clone();
        offset += p.numel();
      }
    }
    works_.clear();
  }

  void abandon() {
    std::lock_guard<std::mutex> lock(mu_);
    flats_.clear();
    works_.clear();
    armed_ = false;
  }

 private:
  struct ReadyHook : torch::autograd::FunctionPostHook {
    ReadyHook(std::weak_ptr<Reducer> r, size_t i) : reducer(std::move(r)), index(i) {}
    torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) override {
      if (auto r = reducer.lock()) r->ready(index);
      return outputs;
    }
    std::weak_ptr<Reducer> reducer;
    size_t index;
  };

  void set_buckets(std::vector<std::vector<size_t>> buckets) {
    buckets_ = std::move(buckets);
    bucket_of_.assign(params_.size(), 0);
    for (size_t b = 0; b < buckets_.size(); b++)
      for (size_t i : buckets_[b]) bucket_of_.at(i) = b;
  }

  // Flattens bucket b's gradients (zeros for a parameter without one) and starts its sum (mu_ held).
  void launch(size_t b) {
    std::vector<at::Tensor> parts;
    for (size_t i : buckets_[b]) {
      const auto& p = params_[i];
      parts.push_back(p.grad().defined() ? p.grad().reshape({-1}) : at::zeros({p.numel()}, p.options()));
    }
    // the bucket's buffer is kept between updates (as DDP's): no allocation per update
    if (flats_.size() != buckets_.size()) flats_.assign(buckets_.size(), at::Tensor());
    at::Tensor& flat = flats_[b];
    {
      at::NoGradGuard no_grad;
      if (flat.defined()) at::cat_out(flat, parts);
      else flat = at::cat(parts);
    }
    std::vector<at::Tensor> tensors{flat};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    works_.push_back(backend_->allreduce(tensors, opts));
  }

  c10::intrusive_ptr<c10d::Backend> backend_;
  std::vector<at::Tensor> params_;
  std::vector<std::vector<size_t>> buckets_;
  std::vector<size_t> bucket_of_;
  double divisor_;
  std::vector<GradAccumulator> accumulators_;
  std::mutex mu_;
  bool armed_ = false;
  std::vector<int> pending_;
  std::vector<bool> ready_;
  size_t next_ = 0;
  std::vector<at::Tensor> flats_;
  std::vector<c10::intrusive_ptr<c10d::Work>> works_;
  std::string error_;
  std::vector<bool> seen_;
  std::vector<size_t> order_;
};

struct ReducerBox {
  std::shared_ptr<Reducer> reducer;
};

Reducer& reducer_of(napi_env env, napi_value v) {
  bool tagged = false;
  if (type_of(env, v) != napi_external || napi_check_object_type_tag(env, v, &kReducerTag, &tagged) != napi_ok || !tagged)
    throw ArgError("expected a gradient reducer");
  void* data;
  check(env, napi_get_value_external(env, v, &data), "reducer");
  return *static_cast<ReducerBox*>(data)->reducer;
}

// Buckets from JS: arrays of parameter indices, each index exactly once.
std::vector<std::vector<size_t>> parse_buckets(napi_env env, napi_value v, size_t count) {
  std::vector<std::vector<size_t>> buckets;
  std::vector<bool> seen(count, false);
  uint32_t nb = 0;
  check(env, napi_get_array_length(env, v, &nb), "buckets");
  for (uint32_t b = 0; b < nb; b++) {
    napi_value e;
    check(env, napi_get_element(env, v, b, &e), "buckets");
    std::vector<size_t> bucket;
    for (int64_t i : get_int_list(env, e, "bucket")) {
      if (i < 0 || static_cast<size_t>(i) >= count || seen[i]) throw ArgError("buckets must hold each parameter index exactly once");
      seen[i] = true;
      bucket.push_back(static_cast<size_t>(i));
    }
    buckets.push_back(std::move(bucket));
  }
  for (bool s : seen)
    if (!s) throw ArgError("buckets must hold each parameter index exactly once");
  return buckets;
}

// distReducer(group, params, buckets, divisor) -> Reducer. buckets: arrays of indices into params,
// in the order their all-reduces start (DDP: reverse parameter order).
napi_value dist_reducer(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto backend = group_backend(env, a.argv[0]);
  std::vector<at::Tensor> params;
  uint32_t n = 0;
  check(env, napi_get_array_length(env, a.argv[1], &n), "params");
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    check(env, napi_get_element(env, a.argv[1], i, &e), "params");
    params.push_back(get_tensor(get_double(env, e, "params")));
  }
  auto buckets = parse_buckets(env, a.argv[2], params.size());
  auto reducer = std::make_shared<Reducer>(backend, std::move(params), std::move(buckets), get_double(env, a.argv[3], "divisor"));
  reducer->attach();
  napi_value ext;
  check(env, napi_create_external(env, new ReducerBox{reducer}, [](napi_env, void* d, void*) { delete static_cast<ReducerBox*>(d); }, nullptr, &ext), "reducer");
  check(env, napi_type_tag_object(env, ext, &kReducerTag), "reducer tag");
  return ext;
  DPO_CATCH(env)
}

// distReducerReadyOrder(reducer) -> number[]; distReducerRebucket(reducer, buckets)
napi_value dist_reducer_ready_order(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto order = reducer_of(env, a.argv[0]).ready_order();
  napi_value arr = make_array(env, order.size());
  for (size_t k = 0; k < order.size(); k++) set_element(env, arr, static_cast<uint32_t>(k), make_int(env, static_cast<int64_t>(order[k])));
  return arr;
  DPO_CATCH(env)
}

napi_value dist_reducer_rebucket(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto& r = reducer_of(env, a.argv[0]);
  r.rebucket(parse_buckets(env, a.argv[1], r.param_count()));
  return make_undefined(env);
  DPO_CATCH(env)
}

napi_value dist_reducer_arm(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  reducer_of(env, a.argv[0]).arm();
  return make_undefined(env);
  DPO_CATCH(env)
}

// distReducerFinish(reducer, timeoutMs) -> Promise<number>: resolves, once the gradients hold the
// averages, with the number of buckets whose all-reduce started during backward.
napi_value dist_reducer_finish(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto* box_value = &reducer_of(env, a.argv[0]);
  auto reducer = box_value->shared_from_this();
  const auto timeout = std::chrono::milliseconds(get_int(env, a.argv[1], "timeoutMs"));
  size_t early = 0;
  auto works = reducer->start_rest(&early);
  return run_async(env, "distReducerFinish",
      [works, timeout, reducer]() {
        try {
          for (auto& w : works) w->wait(timeout);
        } catch (...) {
          reducer->abandon();
          throw;
        }
      },
      [reducer, early](napi_env env) {
        reducer->write_back();
        return make_int(env, static_cast<int64_t>(early));
      });
  DPO_CATCH(env)
}

}  // namespace

void exports_dist_reducer(std::vector<Export>& out) {
  out.push_back({"distReducer", dist_reducer});
  out.push_back({"distReducerArm", dist_reducer_arm});
  out.push_back({"distReducerFinish", dist_reducer_finish});
  out.push_back({"distReducerReadyOrder", dist_reducer_ready_order});
  out.push_back({"distReducerRebucket", dist_reducer_rebucket});
}

}  // namespace dpo
#endif

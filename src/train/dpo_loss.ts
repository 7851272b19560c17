// The Diffusion-DPO objective (Wallace et al. 2023, eq. 14; train.py "START LOSS COMPUTATION"), as a
// pure function of the predictions.
//
// Notation: the batch is [w_1..w_B, l_1..l_B] (preferred then dispreferred), eps the shared noise,
//   e_theta = ||eps - eps_theta(x_t, t)||^2 averaged over C,H,W   (model_losses)
//   e_ref   = ||eps - eps_ref(x_t, t)||^2                        (ref_losses)
//   inside  = -beta/2 * ((e_theta(w) - e_theta(l)) - (e_ref(w) - e_ref(l)))
//   loss    = -mean(log sigmoid(inside));  implicit accuracy = fraction(inside > 0)
import * as torch from '../torch/index.js';

export interface DpoLossOutput {
  loss: torch.Tensor;
  /** per-sample MSE of the trained model, [2B] */
  modelLosses: torch.Tensor;
  modelDiff: torch.Tensor;
  refLosses: torch.Tensor;
  refDiff: torch.Tensor;
  insideTerm: torch.Tensor;
  implicitAcc: torch.Tensor;
  /** 0.5 (mean mse_w + mean mse_l), for logging */
  rawModelLoss: torch.Tensor;
  /** mean reference mse, for logging */
  rawRefLoss: torch.Tensor;
}

/** Per-sample mean squared error over every dimension but the first. */
export function perSampleMse(pred: torch.Tensor, target: torch.Tensor): torch.Tensor {
  return torch.tidy(() => pred.sub(target).pow(2).mean([1, 2, 3]));
}

/** modelPred and refPred: [2B, C, H, W], first half preferred; refPred carries no gradient. */
export function dpoLoss(modelPred: torch.Tensor, refPred: torch.Tensor, target: torch.Tensor, betaDpo: number): DpoLossOutput {
  return torch.tidy(() => {
    const modelLosses = perSampleMse(modelPred, target);
    const [mW, mL] = modelLosses.chunk(2);
    const rawModelLoss = mW!.mean().add(mL!.mean()).mul(0.5);
    const modelDiff = mW!.sub(mL!);
    const { refLosses, refDiff, rawRefLoss } = torch.noGrad(() => {
      const losses = perSampleMse(refPred.detach(), target);
      const [rW, rL] = losses.chunk(2);
      return { refLosses: losses, refDiff: rW!.sub(rL!), rawRefLoss: losses.mean() };
    });
    const insideTerm = modelDiff.sub(refDiff).mul(-0.5 * betaDpo);
    const implicitAcc = torch.noGrad(() => insideTerm.gt(0).sum().float().div(insideTerm.shape[0]!));
    const loss = torch.F.logSigmoid(insideTerm).mean().neg();
    return { loss, modelLosses, modelDiff, refLosses, refDiff, insideTerm, implicitAcc, rawModelLoss, rawRefLoss };
  });
}

/** SFT: plain epsilon-prediction MSE in float32 over everything. */
export function sftLoss(modelPred: torch.Tensor, target: torch.Tensor): torch.Tensor {
  return torch.tidy(() => torch.F.mseLoss(modelPred.float(), target.float()));
}

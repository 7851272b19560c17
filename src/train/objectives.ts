// Pairwise preference objectives beyond Diffusion-DPO's sigmoid (dpo_loss.ts), as pure functions of
// the predictions. The batch is [w_1..w_B, l_1..l_B] (preferred, then dispreferred) with shared
// noise per pair; m = per-sample MSE against the target (the noise), m_ref the reference model's;
//   Δ = (m(w) − m(l)) − (m_ref(w) − m_ref(l))
// is Diffusion-DPO's per-pair quantity, whose negative half, −½Δ, plays the part of the
// log-likelihood-ratio difference of language-model DPO (Wallace et al. 2023, eq. 14).
//
//   sigmoid (Diffusion-DPO)   −log σ(−½·β·Δ)                         dpo_loss.ts
//   hinge (SLiC; trl)         relu(1 − β·(−½Δ)) = relu(1 + ½·β·Δ)
//   ipo (Azar et al. 2023)    (−½Δ − 1/(2β))²: trl's IPO with its log-ratio difference replaced by −½Δ,
//                             so the pairs are pulled to a margin −½Δ = 1/(2β); β plays IPO's 1/τ-like
//                             role (a larger β, a smaller target margin). The diffusers example's IPO
//                             branch refers to an undefined variable; this is the form written down here.
//   mapo (Hong et al. 2024)   mean m(w) − β_mapo·mean log σ(T·(f(m(w)) − f(m(l)))),
//                             f(m) = c·m / (e^{c·m} − 1), c the "snr value" (0.5), T the number of
//                             training timesteps; no reference model (mapo-t2i/mapo utils.py compute_loss)
//   kto (Li et al. 2024,      per image, with its own noise and timestep and a label y (1 desirable, 0 not):
//   Diffusion-KTO)            g = m_ref − m (the implicit reward), z = max(0, mean_batch g) detached (the
//                             KL baseline), loss = mean λ_y·(1 − σ(β·sgn(y)·(g − z))), λ_1 = λ_D, λ_0 = λ_U
//                             (jacklishufan/diffusion-kto train_kto_sd_v1.5.py, its default "sigmoid"
//                             value function; z there is averaged over the processes, here over this
//                             process's batch)
//
// Every loss is the mean over pairs. Implicit accuracy is the share of pairs the objective ranks
// right: −½Δ > 0 for the reference-based ones, f(m(w)) > f(m(l)) (m(w) < m(l)) for MaPO.
import * as torch from '../torch/index.js';
import { dpoLoss, perSampleMse, type DpoLossOutput } from './dpo_loss.js';

export const PAIR_LOSS_TYPES = ['sigmoid', 'hinge', 'ipo', 'mapo', 'kto'] as const;
export type PairLossType = (typeof PAIR_LOSS_TYPES)[number];

export interface PairLossOptions {
  /** β of sigmoid, hinge and IPO (--beta_dpo). */
  beta: number;
  /** MaPO: β_mapo and c (MaPO's snr_value), and T, the scheduler's training timesteps. */
  betaMapo?: number;
  mapoSnrValue?: number;
  numTrainTimesteps?: number;
  /** KTO: each image's label [N] (1 desirable, 0 undesirable), and the weights λ_D, λ_U. */
  labels?: torch.Tensor;
  lambdaDesirable?: number;
  lambdaUndesirable?: number;
}

export interface PairLossOutput {
  loss: torch.Tensor;
  /** per-sample MSE of the trained model, [2B] */
  modelLosses: torch.Tensor;
  /** per-sample MSE of the reference model, [2B]; null without one */
  refLosses: torch.Tensor | null;
  /**
   * The implicit reward margin of each pair, [B]: β·(−½Δ) for the reference-based objectives
   * (Diffusion-DPO's inside term), T·(f(m(w)) − f(m(l))) for MaPO. Positive: ranked right.
   */
  margin: torch.Tensor;
  implicitAcc: torch.Tensor;
  /** 0.5 (mean mse_w + mean mse_l), for logging */
  rawModelLoss: torch.Tensor;
  /** mean reference MSE, for logging; null without a reference model */
  rawRefLoss: torch.Tensor | null;
  /** sigmoid: Diffusion-DPO's intermediate values (the parity cases check them) */
  dpo: DpoLossOutput | null;
  /** Mean MSE of the preferred (desirable) and dispreferred (undesirable) images, the model's and the reference's (null without one); NaN for a group without images. */
  byPreference: { model: [torch.Tensor, torch.Tensor]; ref: [torch.Tensor, torch.Tensor] | null };
}

/** The means of the first and second halves (pairs: preferred, dispreferred). */
function halfMeans(t: torch.Tensor): [torch.Tensor, torch.Tensor] {
  const [a, b] = t.detach().float().chunk(2);
  return [a!.mean(), b!.mean()];
}

/** Means over the desirable (label 1) and undesirable (label 0) images; 0/0 = NaN for an empty group. */
function labelMeans(t: torch.Tensor, labels: torch.Tensor): [torch.Tensor, torch.Tensor] {
  const v = t.detach().float();
  const undesirable = labels.neg().add(1);
  return [v.mul(labels).sum().div(labels.sum()), v.mul(undesirable).sum().div(undesirable.sum())];
}

/**
 * Diffusion-KTO on N images with their labels: see the table above. modelPred, refPred, target:
 * [N, C, H, W]; labels [N] float 1/0.
 */
export function ktoLoss(modelPred: torch.Tensor, refPred: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, o: { beta: number; lambdaDesirable: number; lambdaUndesirable: number }): PairLossOutput {
  return torch.tidy(() => {
    const modelLosses = perSampleMse(modelPred, target);
    const refLosses = torch.noGrad(() => perSampleMse(refPred.detach(), target));
    const g = refLosses.sub(modelLosses);
    const z = torch.noGrad(() => g.detach().mean().clamp(0, null));
    const sign = labels.mul(2).sub(1);
    const x = g.sub(z).mul(sign).mul(o.beta);
    const weight = labels.mul(o.lambdaDesirable - o.lambdaUndesirable).add(o.lambdaUndesirable);
    const loss = weight.mul(torch.F.sigmoid(x).neg().add(1)).mean();
    const margin = torch.noGrad(() => x.detach());
    return {
      loss, modelLosses, refLosses, margin, implicitAcc: torch.noGrad(() => margin.gt(0).sum().float().div(margin.shape[0]!)),
      rawModelLoss: torch.noGrad(() => modelLosses.detach().mean()), rawRefLoss: refLosses.mean(), dpo: null,
      byPreference: { model: labelMeans(modelLosses, labels), ref: labelMeans(refLosses, labels) },
    };
  });
}

/** Whether the objective compares against a frozen reference model (MaPO does not: no reference UNet is loaded). */
export function needsReference(type: PairLossType): boolean {
  return type !== 'mapo';
}

/** Reference-based objectives: −½Δ per pair, from the model's and the reference's per-sample MSEs. */
function halfNegDelta(modelLosses: torch.Tensor, refPred: torch.Tensor, target: torch.Tensor): { logits: torch.Tensor; refLosses: torch.Tensor; rawRefLoss: torch.Tensor } {
  const [mW, mL] = modelLosses.chunk(2);
  const { refLosses, refDiff, rawRefLoss } = torch.noGrad(() => {
    const r = perSampleMse(refPred.detach(), target);
    const [rW, rL] = r.chunk(2);
    return { refLosses: r, refDiff: rW!.sub(rL!), rawRefLoss: r.mean() };
  });
  return { logits: mW!.sub(mL!).sub(refDiff).mul(-0.5), refLosses, rawRefLoss };
}

/** MaPO's f(m) = c·m / (e^{c·m} − 1), as its compute_loss writes it. */
function mapoScore(m: torch.Tensor, c: number): torch.Tensor {
  const cm = m.mul(c);
  return cm.div(cm.exp().sub(1));
}

/**
 * The objective's loss and what it logs. modelPred, refPred, target: [2B, C, H, W], first half
 * preferred; refPred is null for MaPO.
 */
export function pairLoss(type: PairLossType, modelPred: torch.Tensor, refPred: torch.Tensor | null, target: torch.Tensor, o: PairLossOptions): PairLossOutput {
  if (type === 'sigmoid') {
    if (!refPred) throw new Error('the sigmoid objective needs the reference prediction');
    const d: DpoLossOutput = dpoLoss(modelPred, refPred, target, o.beta);
    return {
      loss: d.loss, modelLosses: d.modelLosses, refLosses: d.refLosses, margin: d.insideTerm, implicitAcc: d.implicitAcc,
      rawModelLoss: d.rawModelLoss, rawRefLoss: d.rawRefLoss, dpo: d, byPreference: { model: halfMeans(d.modelLosses), ref: halfMeans(d.refLosses) },
    };
  }
  if (type === 'kto') {
    if (!refPred || !o.labels) throw new Error('the kto objective needs the reference prediction and the images\' labels');
    return ktoLoss(modelPred, refPred, target, o.labels, { beta: o.beta, lambdaDesirable: o.lambdaDesirable ?? 1, lambdaUndesirable: o.lambdaUndesirable ?? 1 });
  }
  return torch.tidy(() => {
    const modelLosses = perSampleMse(modelPred, target);
    const [mW, mL] = modelLosses.chunk(2);
    const rawModelLoss = mW!.mean().add(mL!.mean()).mul(0.5);
    const accuracy = (margin: torch.Tensor) => torch.noGrad(() => margin.gt(0).sum().float().div(margin.shape[0]!));
    if (type === 'mapo') {
      const c = o.mapoSnrValue ?? 0.5;
      const t = o.numTrainTimesteps ?? 1000;
      const logOdds = mapoScore(mW!, c).sub(mapoScore(mL!, c));
      const margin = logOdds.mul(t);
      const ratio = torch.F.logSigmoid(margin).mul(o.betaMapo ?? 0.1);
      return {
        loss: mW!.mean().sub(ratio.mean()), modelLosses, refLosses: null, margin: torch.noGrad(() => margin.detach()), implicitAcc: accuracy(logOdds),
        rawModelLoss, rawRefLoss: null, dpo: null, byPreference: { model: halfMeans(modelLosses), ref: null },
      };
    }
    if (!refPred) throw new Error(`the ${type} objective needs the reference prediction`);
    const { logits, refLosses, rawRefLoss } = halfNegDelta(modelLosses, refPred, target);
    const loss = type === 'hinge'
      ? torch.F.relu(logits.mul(-o.beta).add(1)).mean()
      : logits.sub(1 / (2 * o.beta)).pow(2).mean(); // ipo
    const margin = torch.noGrad(() => logits.detach().mul(o.beta));
    return { loss, modelLosses, refLosses, margin, implicitAcc: accuracy(logits), rawModelLoss, rawRefLoss, dpo: null, byPreference: { model: halfMeans(modelLosses), ref: halfMeans(refLosses) } };
  });
}

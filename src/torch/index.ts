// The tensor layer's public face: `import * as torch from './torch/index.js'`, then torch.randn,
// torch.nn.Linear, torch.F.conv2d, torch.optim.AdamW, torch.tidy, ... It knows nothing of diffusion.
export { Tensor, MEMORY_FORMAT, type MemoryFormat, type Scalar, type ToOptions } from './tensor.js';
export { type DType, DTYPES, ELEMENT_SIZE, isFloatingPoint, type TypedArrayMap } from './dtype.js';
export { type Device, deviceType } from './device.js';
export { toDeviceNonBlocking } from './transfer.js';
export * from './creation.js';
export { tidy, keep, moveToOuterScope, scope, memory, type MemoryInfo } from './scope.js';
export * from './autograd.js';
export { checkpoint, pendingCheckpoints, discardCheckpoints, type CheckpointOptions } from './activation_checkpoint.js';
export { Generator, defaultGenerator, manualSeed } from './random.js';
export * as distributed from './distributed.js';
export * from './runtime.js';
export * as F from './functional.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export {
  SafetensorsFile, SafetensorsError, loadSafetensors, saveSafetensors, snapshotTensors, writeSafetensorsAsync, parseHeader as parseSafetensorsHeader,
  type HostTensor, type TensorInfo,
} from './io/safetensors.js';
export { TorchCheckpoint, TensorRef, CheckpointError, loadTorchCheckpoint, isTorchCheckpoint } from './io/checkpoint.js';
export { UnpicklingError } from './io/pickle.js';
export { opSchema, MANIFEST_KEYS } from './ops.js';
export { GradScaler, type GradScalerOptions, type GradScalerState } from './amp/grad_scaler.js';
export { pilResize, type PilFilter } from './image.js';

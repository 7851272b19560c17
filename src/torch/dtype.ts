// dtypes as string names, their c10::ScalarType codes (checked against the addon at load) and
// the typed arrays that carry them across the boundary.
import { native } from './native.js';

export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'float64', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

/** c10::ScalarType codes: Byte 0, Char 1, Short 2, Int 3, Long 4, Half 5, Float 6, Double 7, Bool 11, BFloat16 15. */
const CODES: Record<DType, number> = {
  uint8: 0, int8: 1, int16: 2, int32: 3, int64: 4, float16: 5, float32: 6, float64: 7, bool: 11, bfloat16: 15,
};
const BY_CODE = new Map<number, DType>(Object.entries(CODES).map(([k, v]) => [v, k as DType]));

(function checkCodes() {
  const nativeCodes = native.scalarTypeCodes();
  for (const [name, code] of Object.entries(CODES)) {
    if (nativeCodes[name] !== code) throw new Error(`dtype table mismatch for ${name}: ts ${code}, libtorch ${nativeCodes[name]}`);
  }
})();

export function dtypeCode(d: DType): number {
  const c = CODES[d];
  if (c === undefined) throw new TypeError(`unknown dtype '${String(d)}' (expected one of ${DTYPES.join(', ')})`);
  return c;
}

export function dtypeFromCode(code: number): DType {
  const d = BY_CODE.get(code);
  if (!d) throw new Error(`libtorch returned a dtype this binding does not model (ScalarType ${code})`);
  return d;
}

export const ELEMENT_SIZE: Record<DType, number> = {
  float32: 4, float16: 2, bfloat16: 2, float64: 8, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

export function isFloatingPoint(d: DType): boolean {
  return d === 'float32' || d === 'float16' || d === 'bfloat16' || d === 'float64';
}

/** The typed array holding each dtype's elements. float16/bfloat16 travel as raw Uint16 bits. */
export interface TypedArrayMap {
  float32: Float32Array;
  float64: Float64Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  int64: BigInt64Array;
  int32: Int32Array;
  int16: Int16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}
export type AnyTypedArray = TypedArrayMap[DType];

export function typedArrayFor<D extends DType>(dtype: D, buffer: ArrayBuffer): TypedArrayMap[D] {
  switch (dtype) {
    case 'float32': return new Float32Array(buffer) as TypedArrayMap[D];
    case 'float64': return new Float64Array(buffer) as TypedArrayMap[D];
    case 'float16': case 'bfloat16': return new Uint16Array(buffer) as TypedArrayMap[D];
    case 'int64': return new BigInt64Array(buffer) as TypedArrayMap[D];
    case 'int32': return new Int32Array(buffer) as TypedArrayMap[D];
    case 'int16': return new Int16Array(buffer) as TypedArrayMap[D];
    case 'int8': return new Int8Array(buffer) as TypedArrayMap[D];
    default: return new Uint8Array(buffer) as TypedArrayMap[D];
  }
}

/** The dtype a typed array naturally holds (Uint16Array is ambiguous and must be named). */
export function dtypeOfTypedArray(a: ArrayBufferView): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array) return 'uint8';
  throw new TypeError(`cannot infer a dtype from ${a.constructor.name}: pass { dtype }`);
}

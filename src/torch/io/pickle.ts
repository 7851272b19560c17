// A restricted unpickler: it runs the pickle opcodes (protocols 0-5) that torch.save emits, and
// resolves globals only from a fixed allow-list (OrderedDict, the tensor/parameter rebuild
// functions, the storage types, torch.Size, torch.device). Any other global is refused with an
// error naming it; nothing is ever imported or executed, so a hostile checkpoint cannot run code.
import { UserError } from '../../util/errors.js';

export class UnpicklingError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'UnpicklingError';
  }
}

/** What allowed globals and persistent ids turn into. */
export interface PickleHooks {
  /** Resolves `module.name`; return undefined to refuse it. */
  global(module: string, name: string): unknown;
  /** BINPERSID / PERSID. */
  persistentLoad(pid: unknown): unknown;
}

/** A callable global produced by hooks.global: called by REDUCE / NEWOBJ. */
export class PickleCallable {
  constructor(readonly qualname: string, readonly call: (args: unknown[]) => unknown) {}
}

/** The result of BUILD on an object we do not model (its state is kept for inspection). */
const MARK = Symbol('mark');

export function unpickle(data: Uint8Array, hooks: PickleHooks): unknown {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;

  const need = (n: number) => {
    if (pos + n > data.length) throw new UnpicklingError(`pickle data truncated at byte ${pos}`);
  };
  const u8 = () => { need(1); return data[pos++]!; };
  const u16 = () => { need(2); const v = view.getUint16(pos, true); pos += 2; return v; };
  const u32 = () => { need(4); const v = view.getUint32(pos, true); pos += 4; return v; };
  const i32 = () => { need(4); const v = view.getInt32(pos, true); pos += 4; return v; };
  const u64 = () => { need(8); const v = view.getBigUint64(pos, true); pos += 8; if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new UnpicklingError('length too large'); return Number(v); };
  const bytes = (n: number) => { need(n); const b = data.subarray(pos, pos + n); pos += n; return b; };
  const line = () => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw new UnpicklingError('pickle data truncated (no newline)');
    const s = Buffer.from(data.subarray(pos, end)).toString('latin1');
    pos = end + 1;
    return s;
  };
  const utf8 = (b: Uint8Array) => Buffer.from(b).toString('utf8');
  const pop = () => {
    if (stack.length === 0) throw new UnpicklingError('pickle stack underflow');
    return stack.pop();
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) throw new UnpicklingError('pickle MARK missing');
    return stack.splice(m);
  };
  const top = () => {
    if (stack.length === 0) throw new UnpicklingError('pickle stack underflow');
    return stack[stack.length - 1];
  };
  const longFromBytes = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const resolveGlobal = (module: string, name: string) => {
    const g = hooks.global(module, name);
    if (g === undefined) {
      throw new UnpicklingError(`refusing to load global '${module}.${name}': only tensors, storages, OrderedDict, ` +
        'dicts, lists, tuples, numbers and strings are allowed in a checkpoint');
    }
    return g;
  };
  const callValue = (fn: unknown, args: unknown[]) => {
    if (!(fn instanceof PickleCallable)) throw new UnpicklingError(`cannot call ${describe(fn)}`);
    return fn.call(args);
  };
  const setItem = (target: unknown, k: unknown, v: unknown) => {
    if (target instanceof Map) target.set(k, v);
    else throw new UnpicklingError(`SETITEM on ${describe(target)}`);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: u64(); break; // FRAME
      case 0x2e: return pop(); // STOP
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(Object.freeze([])); break; // EMPTY_TUPLE
      case 0x74: stack.push(Object.freeze(popMark())); break; // TUPLE
      case 0x85: stack.push(Object.freeze([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push(Object.freeze([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(Object.freeze([a, b, c])); break; } // TUPLE3
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x64: { // DICT
        const items = popMark();
        const m = new Map();
        for (let i = 0; i + 1 < items.length; i += 2) m.set(items[i], items[i + 1]);
        stack.push(m);
        break;
      }
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(longFromBytes(bytes(u8()))); break; // LONG1
      case 0x8b: stack.push(longFromBytes(bytes(u32()))); break; // LONG4
      case 0x47: { need(8); stack.push(view.getFloat64(pos, false)); pos += 8; break; } // BINFLOAT (big-endian)
      case 0x49: { // INT (text; "00"/"01" are False/True)
        const s = line();
        stack.push(s === '00' ? false : s === '01' ? true : Number.parseInt(s, 10));
        break;
      }
      case 0x4c: stack.push(Number.parseInt(line().replace(/L$/, ''), 10)); break; // LONG (text)
      case 0x46: stack.push(Number.parseFloat(line())); break; // FLOAT (text)
      case 0x58: stack.push(utf8(bytes(u32()))); break; // BINUNICODE
      case 0x8c: stack.push(utf8(bytes(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(utf8(bytes(u64()))); break; // BINUNICODE8
      case 0x54: stack.push(Buffer.from(bytes(u32())).toString('latin1')); break; // BINSTRING
      case 0x55: stack.push(Buffer.from(bytes(u8())).toString('latin1')); break; // SHORT_BINSTRING
      case 0x42: stack.push(Uint8Array.from(bytes(u32()))); break; // BINBYTES
      case 0x43: stack.push(Uint8Array.from(bytes(u8()))); break; // SHORT_BINBYTES
      case 0x8e: stack.push(Uint8Array.from(bytes(u64()))); break; // BINBYTES8
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x70: memo.set(Number.parseInt(line(), 10), top()); break; // PUT
      case 0x68: case 0x6a: case 0x67: { // BINGET, LONG_BINGET, GET
        const k = op === 0x68 ? u8() : op === 0x6a ? u32() : Number.parseInt(line(), 10);
        if (!memo.has(k)) throw new UnpicklingError(`pickle memo key ${k} missing`);
        stack.push(memo.get(k));
        break;
      }
      case 0x63: { const module = line(); const name = line(); stack.push(resolveGlobal(module, name)); break; } // GLOBAL
      case 0x93: { const name = pop(); const module = pop(); stack.push(resolveGlobal(String(module), String(name))); break; } // STACK_GLOBAL
      case 0x52: { const args = pop() as unknown[]; const fn = pop(); stack.push(callValue(fn, [...args])); break; } // REDUCE
      case 0x81: { const args = pop() as unknown[]; const cls = pop(); stack.push(callValue(cls, [...args])); break; } // NEWOBJ
      case 0x62: { // BUILD: state for the object below; we model no object that needs it, so it is attached, not run
        const state = pop();
        const obj = top();
        if (obj instanceof Map && state instanceof Map) {
          Object.defineProperty(obj, 'pickleState', { value: state, enumerable: false });
        } else if (typeof obj === 'object' && obj !== null && !Object.isFrozen(obj)) {
          Object.defineProperty(obj, 'pickleState', { value: state, enumerable: false, configurable: true });
        }
        break;
      }
      case 0x73: { const v = pop(); const k = pop(); setItem(top(), k, v); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        const target = top();
        for (let i = 0; i + 1 < items.length; i += 2) setItem(target, items[i], items[i + 1]);
        break;
      }
      case 0x61: { const v = pop(); const list = top(); if (!Array.isArray(list)) throw new UnpicklingError('APPEND to a non-list'); list.push(v); break; } // APPEND
      case 0x65: { // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) throw new UnpicklingError('APPENDS to a non-list');
        list.push(...items);
        break;
      }
      case 0x51: stack.push(hooks.persistentLoad(pop())); break; // BINPERSID
      case 0x50: stack.push(hooks.persistentLoad(line())); break; // PERSID
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x8f: stack.push(new Set()); break; // EMPTY_SET
      case 0x90: { const items = popMark(); const s = top(); if (!(s instanceof Set)) throw new UnpicklingError('ADDITEMS to a non-set'); for (const i of items) s.add(i); break; } // ADDITEMS
      case 0x91: stack.push(new Set(popMark())); break; // FROZENSET
      default:
        throw new UnpicklingError(`unsupported pickle opcode 0x${op.toString(16)} at byte ${pos - 1}` +
          (op === 0x69 || op === 0x6f || op === 0x82 || op === 0x83 || op === 0x84 ? ' (object construction is not allowed)' : ''));
    }
    if (stack.length > 0 && stack[stack.length - 1] === MARK) throw new UnpicklingError('corrupt pickle');
  }
}

function describe(v: unknown): string {
  if (v instanceof PickleCallable) return v.qualname;
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'a list/tuple';
  if (v instanceof Map) return 'a dict';
  return typeof v;
}

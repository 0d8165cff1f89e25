/** The differentiable primitive ops, and the wiring autograd needs. */
import { setBackwardHelpers } from '../autograd.js';
import { add, addInto, cast, copy } from './elementwise.js';
import { onesLike } from './create.js';

export * from './create.js';
export * from './shape.js';
export * from './elementwise.js';
export * from './reduce.js';
export * from './matmul.js';

setBackwardHelpers({ add, addInto, cast, copy, onesLike });

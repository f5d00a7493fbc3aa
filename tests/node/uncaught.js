'use strict';
// An uncaught exception: Node prints the stack to stderr and exits with status 1.
console.log('before throw');
function deep(n) {
  if (n === 0) throw new Error('deliberate uncaught error');
  return deep(n - 1);
}
setTimeout(() => {
  console.log('in timer');
  deep(3);
}, 1);

'use strict';
// Per-request choices for mixed.yml: which call comes next, on which product, under which
// Idempotency-Key. Artillery's $randomNumber takes only literal bounds, and $uuid is one per
// virtual user, so both are made here.

const { randomInt, randomUUID } = require('node:crypto');

const ORDER_SHARE = 0.1;
const productCount = Number.parseInt(process.env.PRODUCT_COUNT || '', 10);

function pickNextRequest(context, events, done) {
  if (!(productCount >= 1)) {
    return done(new Error('PRODUCT_COUNT must be a positive integer'));
  }
  const placeOrder = Math.random() < ORDER_SHARE;
  context.vars.placeOrder = placeOrder;
  context.vars.readProduct = !placeOrder;
  context.vars.productId = randomInt(1, productCount + 1);
  context.vars.idempotencyKey = randomUUID();
  return done();
}

module.exports = { pickNextRequest };

/**
 * Hardening: the second half of the in-process admission fuzz. See fuzz.test.ts for what is
 * generated and what every reply must be; this file sends bodies FUZZ_COUNT/2…FUZZ_COUNT-1 of the
 * same seeded stream in its own process, so tap runs both halves side by side.
 */
import t from 'tap'
import { FUZZ_COUNT, fuzzConfig, inProcessFuzz, LONG, pollutionCheck, SEED } from '../helpers/fuzz-runner.js'

const FIRST_HALF = Math.ceil(FUZZ_COUNT / 2)
t.setTimeout((LONG ? 30 : 3) * 60_000)
t.comment(`fuzz seed ${SEED} (HARDENING_SEED): bodies ${FIRST_HALF}–${FUZZ_COUNT - 1} of ${FUZZ_COUNT} in process`)

const config = fuzzConfig(t)
const registerPollutionCheck = pollutionCheck(t)
inProcessFuzz(t, config, FIRST_HALF, FUZZ_COUNT - FIRST_HALF)
registerPollutionCheck()

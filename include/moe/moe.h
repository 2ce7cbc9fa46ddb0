// The whole public API of moe in one include.
#pragma once

#include "moe/core/build_info.h"
#include "moe/core/error.h"
#include "moe/core/logging.h"
#include "moe/core/registry.h"
#include "moe/layers/expert_bank.h"
#include "moe/layers/moe_layer.h"
#include "moe/ops/dispatch_combine.h"
#include "moe/ops/layout.h"
#include "moe/routing/capacity.h"
#include "moe/routing/losses.h"
#include "moe/routing/router.h"
#include "moe/routing/expert_choice_router.h"
#include "moe/routing/hash_router.h"
#include "moe/routing/stochastic_router.h"
#include "moe/routing/threshold_router.h"
#include "moe/routing/topk_router.h"
